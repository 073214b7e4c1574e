"""Bottleneck hints: core.run.bottleneck.hints on constructed loads, and real runs with one deliberately slow stage.

The real runs push 100 items through a stage that sleeps 10 ms per item with one instance, while every
other stage takes microseconds: the slow stage is busy ~99% of the ~1 s run and its input queue stays full,
so the hint is decided by a wide margin, not by timing luck.
"""

from __future__ import annotations

import re
import textwrap
import uuid
from pathlib import Path

import fixture_workers
import pytest

from core.app.executor import YamlPipelineExecutor
from core.run.bottleneck import QueueLoad, StageLoad, hints

JOIN_TIMEOUT_S = 30.0
ITEMS = 100
DELAY_S = 0.01
SAMPLE_INTERVAL_S = 0.01


def load(*, samples: int = 100, nonempty: int = 0, full: int = 0) -> QueueLoad:
    """A queue watched for `samples` seconds: non-empty `nonempty` of them, full `full` of them."""
    return QueueLoad(seconds=samples, nonempty_s=nonempty, full_s=full, size_seconds=full * 1000)


def source(name: str = "WikiWorker", busy: float = 0.05) -> StageLoad:
    return StageLoad(name=name, instances=1, busy=busy, items_per_s=1.0)


def stage(
    name: str,
    queue: str,
    queue_load: QueueLoad,
    *,
    busy: float,
    instances: int = 1,
    items_per_s: float = 100.0,
    requests_per_second: float = 0.0,
) -> StageLoad:
    return StageLoad(
        name=name,
        instances=instances,
        busy=busy,
        items_per_s=items_per_s,
        input_queue=queue,
        input_load=queue_load,
        requests_per_second=requests_per_second,
    )


# --- QueueLoad --------------------------------------------------------------------------------------


def test_queue_load_weighs_each_sample_by_the_time_it_stands_for():
    queue_load = QueueLoad()
    for size, seconds in ((0, 1.0), (5, 1.0), (8, 1.0), (9, 1.0), (10, 1.0)):
        queue_load.add(size, 10, seconds)

    assert (queue_load.seconds, queue_load.nonempty_s, queue_load.full_s, queue_load.size_seconds) == (5, 4, 2, 32)
    assert queue_load.fraction(queue_load.full_s) == pytest.approx(0.4)
    assert queue_load.mean_size() == pytest.approx(6.4)
    # Many samples close together (a burst of instance exits, say) weigh only the moments they cover.
    for _ in range(50):
        queue_load.add(0, 10, 0.001)
    assert queue_load.fraction(queue_load.nonempty_s) == pytest.approx(4 / 5.05)


def test_queue_load_without_samples():
    assert QueueLoad().fraction(0) == 0.0
    assert QueueLoad().mean_size() == 0.0


# --- hints() ----------------------------------------------------------------------------------------


def test_the_stage_that_kept_its_queue_full_is_told_to_scale_and_the_idle_one_is_named():
    stages = [
        source(),
        stage("YahooFinanceWorker", "SymbolQueue", load(nonempty=97, full=93), busy=0.97, instances=4),
        stage("PostgresWorker", "PostgresUploading", load(nonempty=10), busy=0.05),
    ]

    assert hints(stages) == [
        "YahooFinanceWorker kept SymbolQueue full 93% of the time, its instances busy 97%: raise its instances (now 4)"
    ]  # a sink of one instance that idled is told nothing: it cannot have fewer


def test_idle_stage_with_several_instances_is_told_it_has_too_many():
    stages = [
        source(),
        stage("YahooFinanceWorker", "SymbolQueue", load(nonempty=90, full=80), busy=0.9),
        stage("PostgresWorker", "PostgresUploading", load(nonempty=5), busy=0.1, instances=4),
    ]

    assert hints(stages)[1] == "PostgresWorker sat idle 90% of the time: 4 instances are more than it needs"


def test_queue_that_was_never_full_but_rarely_empty():
    stages = [source(), stage("Slow", "Numbers", load(nonempty=80, full=10), busy=0.95, instances=2)]

    assert hints(stages) == [
        "Slow kept Numbers non-empty 80% of the time, its instances busy 95%: raise its instances (now 2)"
    ]


def test_rate_limited_stage_is_told_to_raise_the_limit_not_instances():
    stages = [
        source(),
        stage(
            "YahooFinanceWorker",
            "SymbolQueue",
            load(nonempty=99, full=95),
            busy=0.99,
            instances=4,
            items_per_s=4.9,
            requests_per_second=5,
        ),
    ]

    assert hints(stages) == [
        "YahooFinanceWorker kept SymbolQueue full 95% of the time, its instances busy 99%, at 4.9 items/s against "
        "requests_per_second=5: raise requests_per_second (if the site allows), not instances"
    ]


def test_stage_well_below_its_rate_limit_is_told_to_scale():
    stages = [
        source(),
        stage(
            "YahooFinanceWorker",
            "SymbolQueue",
            load(nonempty=99, full=95),
            busy=0.99,
            instances=4,
            items_per_s=2.0,
            requests_per_second=5,
        ),
    ]

    assert hints(stages) == [
        "YahooFinanceWorker kept SymbolQueue full 95% of the time, its instances busy 99%: raise its instances (now 4)"
    ]


def test_of_two_backlogged_stages_the_busier_one_is_the_bottleneck():
    stages = [
        source(),
        stage("Blocked", "First", load(nonempty=95, full=95), busy=0.02),  # waits on a full output queue
        stage("Slow", "Second", load(nonempty=95, full=90), busy=0.99),
    ]

    advice = hints(stages)

    assert advice[0] == "Slow kept Second full 90% of the time, its instances busy 99%: raise its instances (now 1)"
    assert not any("raise" in hint for hint in advice[1:]), advice


def test_backlog_without_a_busy_stage_tells_no_one_to_scale():
    stages = [source(), stage("Middle", "Numbers", load(nonempty=90, full=90), busy=0.5)]

    assert hints(stages) == []


def test_no_backlog_means_the_source_set_the_pace():
    stages = [
        source("Reader"),
        stage("YahooFinanceWorker", "SymbolQueue", load(nonempty=20), busy=0.5),
        stage("PostgresWorker", "PostgresUploading", load(nonempty=10), busy=0.3),
    ]

    assert hints(stages) == ["no queue built up: the run went as fast as its source (Reader) produced"]


def test_no_samples_no_hints():
    stages = [source(), stage("Sink", "Numbers", load(samples=0), busy=0.0)]

    assert hints(stages) == []


def test_backlogged_but_idle_stage_is_reported_idle():
    stages = [
        source(),
        stage("YahooFinanceWorker", "SymbolQueue", load(nonempty=25, full=25), busy=0.62, instances=8),
        stage("PostgresWorker", "PostgresUploading", load(nonempty=58), busy=0.08),
    ]

    assert hints(stages) == []
    stages[2].instances = 2
    assert hints(stages) == ["PostgresWorker sat idle 92% of the time: 2 instances are more than it needs"]


def test_the_hint_says_how_many_instances_would_keep_up_with_the_stage_upstream():
    """32 instances at 0.95 busy did 150 items/s, ~4.9 per busy instance; the source could give 1,000 items/s."""
    stages = [
        source(),
        stage(
            "YahooFinanceWorker", "SymbolQueue", load(nonempty=90, full=10), busy=0.95, instances=32, items_per_s=150
        ),
    ]
    stages[1].upstream, stages[1].upstream_rate = "WikiWorker", 1000.0

    assert hints(stages) == [
        "YahooFinanceWorker kept SymbolQueue non-empty 90% of the time, its instances busy 95%: raise its instances "
        "(now 32); about 203 would keep up with WikiWorker's 1000 items/s"
    ]


def test_a_cpu_bound_stage_on_every_core_is_told_so_not_to_add_instances():
    """`processes: 2` x 1 on 2 cores was told "raise its instances (now 2)": more processes than cores do not help."""
    busy_stage = stage("Crunch", "Numbers", load(nonempty=95, full=90), busy=0.97, instances=2, items_per_s=40)
    busy_stage.processes = 2

    assert hints([source(), busy_stage], cores=2) == [
        "Crunch kept Numbers full 90% of the time, its instances busy 97%: its 2 processes already use the "
        "machine's 2 cores, so more would not make it faster; make each item cheaper, or add a machine (Redis queues)"
    ]
    busy_stage.instances = busy_stage.processes = 1
    assert hints([source(), busy_stage], cores=4) == [
        "Crunch kept Numbers full 90% of the time, its instances busy 97%: raise its processes (now 1) up to 4, the "
        "machine's cores"
    ]


# --- real runs with one deliberately slow stage --------------------------------------------------------

THREE_STAGES = """\
queues:
  - name: Numbers
    maxsize: 10
  - name: Passed
    maxsize: 10
workers:
  - name: Source
    location: fixture_workers
    class: Source
    input_values: {values}
    output_queues: [Numbers]
  - name: Middle
    location: fixture_workers
    class: {middle}
    input_queue: Numbers
    output_queues: [Passed]
    params: {middle_params}
  - name: Sink
    location: fixture_workers
    class: {sink}
    input_queue: Passed
    params: {sink_params}
"""


@pytest.fixture
def key():
    """A name of its own for this test's sink, forgotten afterwards."""
    name = f"bottleneck-{uuid.uuid4().hex[:8]}"
    yield name
    fixture_workers.forget(name)


def run(tmp_path: Path, text: str):
    """Run the pipeline to its end, sampling queues every SAMPLE_INTERVAL_S; return its report."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl", sample_interval_s=SAMPLE_INTERVAL_S)
    executor.start()
    executor.join(JOIN_TIMEOUT_S)
    assert not executor.is_alive(), "the run did not end"
    report = executor.report
    assert report.finish_reason == "finished" and report.exit_code == 0, report.summary()
    return report


def scale_hints(advice: list[str]) -> list[str]:
    return [hint for hint in advice if "raise" in hint]


def test_slow_middle_stage_is_the_one_to_scale(tmp_path, key):
    report = run(
        tmp_path,
        THREE_STAGES.format(
            values=list(range(ITEMS)),
            middle="Slow",
            middle_params=f"{{delay_s: {DELAY_S}}}",
            sink="Collect",
            sink_params=f"{{key: {key}}}",
        ),
    )

    assert sorted(fixture_workers.collected(key)) == list(range(ITEMS))
    groups = {group.name: group for group in report.groups}
    queues = {queue.name: queue for queue in report.queues}
    assert groups["Middle"].busy_pct >= 80 > groups["Sink"].busy_pct
    assert queues["Numbers"].full_pct >= 50 and queues["Numbers"].nonempty_pct >= 50
    [scale] = scale_hints(report.hints)
    assert scale.startswith("Middle kept Numbers full ")
    assert re.search(r": raise its instances \(now 1\); about \d+ would keep up with Source's \d+ items/s$", scale), (
        scale
    )
    assert not any(hint.startswith("Sink sat idle ") for hint in report.hints), report.hints  # one instance
    table = report.table().splitlines()
    assert [line for line in table if line.startswith("hint: ")] == [f"hint: {hint}" for hint in report.hints]
    assert report.to_dict()["hints"] == report.hints


def test_slow_sink_is_the_one_to_scale(tmp_path):
    report = run(
        tmp_path,
        THREE_STAGES.format(
            values=list(range(ITEMS)),
            middle="Multiply",
            middle_params="{factor: 1}",
            sink="Slow",
            sink_params=f"{{delay_s: {DELAY_S}}}",
        ),
    )

    groups = {group.name: group for group in report.groups}
    # Middle waits on the full Passed queue; that wait is not work, so it is not the bottleneck.
    assert groups["Sink"].busy_pct >= 80 > groups["Middle"].busy_pct
    [scale] = scale_hints(report.hints)
    assert scale.startswith("Sink kept Passed full ")
    assert re.search(r": raise its instances \(now 1\); about \d+ would keep up with Middle's \d+ items/s$", scale), (
        scale
    )
    assert not any(hint.startswith(("Middle kept", "Source kept")) for hint in report.hints), report.hints


def test_a_queue_full_for_most_of_the_run_is_not_hidden_by_the_instances_ending(tmp_path, key):
    """64 instances of the middle stage end within moments of each other once the queue is drained; samples taken
    at each end would outnumber those taken while it was full (seen: 35.6% where it was non-empty ~90% of the run)."""
    path = tmp_path / "pipeline.yaml"
    items, instances, delay_s = 1500, 64, 0.05  # ~1.2 s of work with the queue never empty until its end
    text = THREE_STAGES.format(
        values=list(range(items)),
        middle="Slow",
        middle_params=f"{{delay_s: {delay_s}}}",
        sink="Collect",
        sink_params=f"{{key: {key}}}",
    ).replace("  - name: Numbers\n    maxsize: 10\n", "  - name: Numbers\n    maxsize: 2000\n")
    text = text.replace("    class: Slow\n", f"    class: Slow\n    instances: {instances}\n")
    path.write_text(textwrap.dedent(text))
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl")  # the default 0.2 s samples
    executor.start()
    executor.join(JOIN_TIMEOUT_S)
    assert not executor.is_alive(), "the run did not end"
    report = executor.report

    assert report.finish_reason == "finished", report.summary()
    assert sorted(fixture_workers.collected(key)) == list(range(items))
    numbers = {queue.name: queue for queue in report.queues}["Numbers"]
    assert numbers.high_water > 1000
    assert numbers.nonempty_pct >= 60, report.table()
