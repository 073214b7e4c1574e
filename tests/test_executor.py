"""YamlPipelineExecutor end to end with real threads: DONE, fan-in, fan-out, failures, crashes, stopping.

Every pipeline uses the tiny workers of fixture_workers. The monitor interval is set far beyond any
join timeout, so a test passes only if ends travel by events, never because the monitor polled.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import textwrap
import threading
import time
import uuid
from multiprocessing import forkserver
from pathlib import Path

import fixture_workers
import pytest
from blocking import wait_parked

from core.app.executor import YamlPipelineExecutor
from core.transport.base import DONE

JOIN_TIMEOUT_S = 20.0
MONITOR_INTERVAL_S = 600.0


#: Where the groups that read a queue run, and through what: the guarantees below are tested once and run
#: over each (threads and local queues; worker processes; every queue in Redis).
MODES = ("threads", "processes", "redis")
_mode = ["threads"]


@pytest.fixture(params=MODES)
def mode(request):
    """The mode of this run: threads, or every group that reads a queue in 2 worker processes."""
    _mode[0] = request.param
    yield request.param
    _mode[0] = "threads"
    if request.param == "processes":
        assert not multiprocessing.active_children(), "worker processes left running"
        forkserver._forkserver._stop()  # noqa: SLF001 - the fork server must not outlive the test either


@pytest.fixture
def key(mode, tmp_path):
    """A name of its own for this test's sinks and gates, forgotten afterwards; in processes mode a path,
    so that sinks in worker processes record to files the test reads."""
    name = f"test-{uuid.uuid4().hex[:8]}" if mode == "threads" else str(tmp_path / "sink")
    yield name
    fixture_workers.gate(name).set()  # a failed test must not leave a source waiting for its gate
    fixture_workers.forget(name)


def in_mode(text: str) -> str:
    """The pipeline text for the current mode: in processes mode each group reading a queue gets 2 processes;
    in redis mode every queue is a Redis stream (on 127.0.0.1:6379, in a run of its own)."""
    if _mode[0] == "processes":
        text = re.sub(r"^(\s*)input_queue: (.*)$", r"\1input_queue: \2\n\1processes: 2", text, flags=re.MULTILINE)
    if _mode[0] == "redis":
        queues, workers = text.split("workers:", 1)
        queues = re.sub(r"^(\s*)- name: (.*)$", r"\1- name: \2\n\1  backend: redis", queues, flags=re.MULTILINE)
        text = queues + "workers:" + workers
    return text


def start(tmp_path: Path, text: str) -> YamlPipelineExecutor:
    """Write the pipeline file (in the current mode), build the executor and start it."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(in_mode(textwrap.dedent(text)))
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl", monitor_interval_s=MONITOR_INTERVAL_S)
    executor.start()
    return executor


def finish(executor: YamlPipelineExecutor):
    """Join the executor with a timeout; every worker thread must have ended too. Returns the report."""
    executor.join(JOIN_TIMEOUT_S)
    assert not executor.is_alive(), "the run did not end"
    running = [g.name for g in executor.groups.values() if g.runner.alive()]
    assert not running, f"worker groups still running: {running}"
    assert executor.report is not None
    return executor.report


def per_group(count: int) -> int:
    """How many of something a group has in the current mode (each reading group runs in 2 processes)."""
    return count * (2 if _mode[0] == "processes" else 1)


def run(tmp_path: Path, text: str):
    """Run a pipeline to its end and return (executor, report)."""
    executor = start(tmp_path, text)
    return executor, finish(executor)


def started(group) -> bool:
    """Whether anything of the group was started: a thread, or a worker process."""
    threads = getattr(group.runner, "threads", [])
    units = getattr(group.runner, "units", [])
    return any(t.ident is not None for t in threads) or any(u.process is not None for u in units)


def groups(report) -> dict:
    """The report's groups by name."""
    return {group.name: group for group in report.groups}


def queues(report) -> dict:
    """The report's queues by name."""
    return {queue.name: queue for queue in report.queues}


def assert_accounted(report) -> None:
    """Every item every group received was processed or dead-lettered, and no queue kept any."""
    for group in report.groups:
        assert group.received == group.processed + group.dead_lettered, group
        assert group.in_flight == 0, group
    assert all(queue.left == 0 for queue in report.queues), report.queues
    assert report.lost == 0


def dead_letters(tmp_path: Path) -> list[dict]:
    """The dead-letter file's records."""
    return [json.loads(entry) for entry in (tmp_path / "dl.jsonl").read_text().splitlines()]


def source(name: str, values, output: str, **params) -> str:
    """A Source group as pipeline text."""
    return (
        f"  - name: {name}\n    location: fixture_workers\n    class: Source\n"
        f"    input_values: {list(values)}\n    output_queues: [{output}]\n" + _params(params)
    )


def stage(name: str, class_name: str, input_queue: str, outputs=(), instances: int = 1, **params) -> str:
    """A group reading `input_queue` as pipeline text."""
    text = (
        f"  - name: {name}\n    location: fixture_workers\n    class: {class_name}\n"
        f"    instances: {instances}\n    input_queue: {input_queue}\n"
    )
    if outputs:
        text += f"    output_queues: [{', '.join(outputs)}]\n"
    return text + _params(params)


def pipeline(queue_sizes: dict[str, int], *workers: str) -> str:
    """A whole pipeline file from its queues (name: maxsize) and worker groups."""
    text = "queues:\n" + "".join(f"  - name: {n}\n    maxsize: {size}\n" for n, size in queue_sizes.items())
    return text + "workers:\n" + "".join(workers)


def _params(params: dict) -> str:
    if not params:
        return ""
    return "    params:\n" + "".join(f"      {k}: {json.dumps(v)}\n" for k, v in params.items())


def test_building_the_executor_starts_no_thread(tmp_path, key):
    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline({"Q": 5}, source("Source", [1], "Q"), stage("Sink", "Collect", "Q", key=key)))
    before = threading.active_count()

    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl")

    assert threading.active_count() == before
    assert executor.report is None


def test_clean_run_exits_0_without_a_dead_letter_file(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 3, "Tripled": 3},
            source("Source", range(20), "Numbers"),
            stage("Triple", "Multiply", "Numbers", ["Tripled"], instances=2, factor=3),
            stage("Sink", "Collect", "Tripled", key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == [3 * n for n in range(20)]
    assert report.finish_reason == "finished"
    assert report.exit_code == 0
    assert report.dead_letters == 0
    assert not (tmp_path / "dl.jsonl").exists()
    assert_accounted(report)
    by_name = groups(report)
    assert (by_name["Source"].received, by_name["Source"].processed, by_name["Source"].emitted) == (20, 20, 20)
    assert (by_name["Triple"].received, by_name["Triple"].processed, by_name["Triple"].emitted) == (20, 20, 20)
    assert (by_name["Sink"].received, by_name["Sink"].processed, by_name["Sink"].emitted) == (20, 20, 0)
    assert [g.sink for g in report.groups] == [False, False, True]
    assert all(g.crashed == 0 and g.failed == 0 for g in report.groups)
    for queue in report.queues:
        assert (queue.put, queue.taken, queue.left) == (20, 20, 0)
        # A local queue never holds more than maxsize; a Redis one is bounded in Redis, and its high water
        # is what this process fetched ahead for its instances.
        assert 1 <= queue.high_water <= (queue.maxsize if _mode[0] != "redis" else 16)
    data = report.to_dict()
    assert data["exit_code"] == 0 and data["lost"] == 0
    assert data["groups"]["Sink"]["received"] == 20
    assert data["queues"]["Numbers"]["maxsize"] == 3


def test_done_reaches_every_instance_of_every_group(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Doubled": 5},
            source("Source", range(200), "Numbers"),
            stage("Double", "Multiply", "Numbers", ["Doubled"], instances=4),
            stage("Sink", "Collect", "Doubled", instances=3, key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == [2 * n for n in range(200)]
    for name, instances in (("Double", 4), ("Sink", 3)):
        group = executor.groups[name]
        assert group.runner.size == per_group(instances)
        assert all(i.finished and i.crash is None for i in group.instances) and not group.runner.alive()
        assert sum(i.counts.received for i in group.instances) == 200
    assert groups(report)["Double"].instances == per_group(4)
    assert groups(report)["Double"].emitted == 200
    assert groups(report)["Sink"].processed == 200
    assert report.exit_code == 0
    assert_accounted(report)


@pytest.mark.parametrize("mode", ["threads"])  # it watches the sink's threads
def test_consumer_gets_every_item_of_two_producers_and_ends_only_after_both(tmp_path, key):
    executor = start(
        tmp_path,
        pipeline(
            {"Numbers": 4},
            source("Fast", range(30), "Numbers"),
            source("Held", range(1000, 1030), "Numbers", gate=key),
            stage("Sink", "Collect", "Numbers", instances=2, key=key),
        ),
    )
    try:
        assert len(fixture_workers.wait_collected(key, 30)) == 30
        fast = executor.groups["Fast"].runner.threads[0]
        fast.join(JOIN_TIMEOUT_S)
        assert not fast.is_alive()
        sinks = executor.groups["Sink"].runner.threads
        # One producer has ended and its items are all in; the other has not: every sink waits for more
        # (parked in its queue's wait, not woken), none ends yet.
        for sink in sinks:
            wait_parked(sink, executor.queues["Numbers"])
        assert all(sink.is_alive() for sink in sinks)
        assert fixture_workers.collected(key) and all(n < 1000 for n in fixture_workers.collected(key))
    finally:
        fixture_workers.gate(key).set()
    report = finish(executor)

    assert sorted(fixture_workers.collected(key)) == list(range(30)) + list(range(1000, 1030))
    assert report.exit_code == 0
    assert report.dead_letters == 0
    assert_accounted(report)


def test_fan_out_sends_every_item_to_every_output_queue(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Left": 2, "Right": 7},
            source("Source", range(50), "Numbers"),
            stage("Double", "Multiply", "Numbers", ["Left", "Right"], instances=3),
            stage("LeftSink", "Collect", "Left", key=f"{key}-left"),
            stage("RightSink", "Collect", "Right", instances=2, key=f"{key}-right"),
        ),
    )
    try:
        assert sorted(fixture_workers.collected(f"{key}-left")) == [2 * n for n in range(50)]
        assert sorted(fixture_workers.collected(f"{key}-right")) == [2 * n for n in range(50)]
    finally:
        fixture_workers.forget(f"{key}-left")
        fixture_workers.forget(f"{key}-right")
    assert groups(report)["Double"].emitted == 50  # counted once per output, whatever the queues
    assert queues(report)["Left"].put == queues(report)["Right"].put == 50
    assert report.exit_code == 0
    assert_accounted(report)


@pytest.mark.parametrize("mode", ["threads"])  # it watches the stages' threads
def test_producers_that_end_at_different_times(tmp_path, key):
    # Into Merged: a source that ends at once, three slow instances that end one by one as the
    # shared input runs out, and a source held until the others have ended.
    executor = start(
        tmp_path,
        pipeline(
            {"Raw": 3, "Merged": 3},
            source("Quick", range(10), "Merged"),
            source("Feed", range(100, 160), "Raw"),
            stage("Slow", "Slow", "Raw", ["Merged"], instances=3, delay_s=0.002),
            source("Late", range(500, 505), "Merged", gate=key),
            stage("Sink", "Collect", "Merged", key=key),
        ),
    )
    try:
        fixture_workers.wait_collected(key, 70)
        for name in ("Quick", "Feed", "Slow"):
            for thread in executor.groups[name].runner.threads:
                thread.join(JOIN_TIMEOUT_S)
                assert not thread.is_alive()
        wait_parked(executor.groups["Sink"].runner.threads[0], executor.queues["Merged"])  # waits for Late
    finally:
        fixture_workers.gate(key).set()
    report = finish(executor)

    assert sorted(fixture_workers.collected(key)) == [*range(10), *range(100, 160), *range(500, 505)]
    assert groups(report)["Slow"].processed == 60
    assert report.exit_code == 0
    assert_accounted(report)


def test_failing_items_are_dead_lettered_and_the_others_pass(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 3, "Even": 3},
            source("Source", range(20), "Numbers"),
            stage("EvenOnly", "FailOdd", "Numbers", ["Even"], instances=2),
            stage("Sink", "Collect", "Even", key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == list(range(0, 20, 2))
    even_only = groups(report)["EvenOnly"]
    assert (even_only.received, even_only.processed, even_only.failed, even_only.dead_lettered) == (20, 10, 10, 10)
    assert even_only.emitted == 10
    assert report.finish_reason == "finished"
    assert report.exit_code == 1
    assert report.dead_letters == 10
    assert report.dead_letter_path == str(tmp_path / "dl.jsonl")
    assert_accounted(report)
    records = dead_letters(tmp_path)
    assert sorted(r["item"] for r in records) == list(range(1, 20, 2))
    for record in records:
        assert record["group"] == "EvenOnly"
        assert record["pipeline"] == "pipeline"
        assert record["error"] == f"ItemError: odd number {record['item']}"
        assert record["attempts"] == 1
        assert record["time"]


def test_group_crashing_in_setup_ends_the_run_and_loses_nothing(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 2, "After": 2},
            source("Source", range(20), "Numbers"),
            stage("Broken", "CrashInSetup", "Numbers", ["After"], instances=2),
            stage("Sink", "Collect", "After", key=key),
        ),
    )

    by_name = groups(report)
    assert by_name["Broken"].crashed == per_group(2)
    assert all(i.crash is not None for i in executor.groups["Broken"].instances)
    assert by_name["Source"].emitted == 20
    assert (by_name["Broken"].received, by_name["Broken"].dead_lettered, by_name["Broken"].processed) == (20, 20, 0)
    # Downstream of the crashed group got DONE and ended normally, with nothing.
    assert by_name["Sink"].received == 0 and by_name["Sink"].crashed == 0
    assert fixture_workers.collected(key) == []
    assert report.lost == 0
    assert report.exit_code == 1
    assert_accounted(report)
    records = dead_letters(tmp_path)
    assert sorted(r["item"] for r in records) == list(range(20))
    assert {r["group"] for r in records} == {"Broken"}
    # Queued for a group that had ended, or sent to a worker process none of whose instances was left.
    assert all("queue was closed" in r["error"] or "was left to take it" in r["error"] for r in records)


def test_one_crashed_instance_leaves_the_others_to_do_the_work(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 3, "Passed": 3},
            source("Source", range(40), "Numbers"),
            stage("Partly", "CrashInSetup", "Numbers", ["Passed"], instances=3, crash_index=0),
            stage("Sink", "Collect", "Passed", key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == list(range(40))
    partly = groups(report)["Partly"]
    assert (partly.crashed, partly.received, partly.processed, partly.dead_lettered) == (1, 40, 40, 0)
    if _mode[0] == "threads":
        assert executor.groups["Partly"].instances[0].counts.received == 0
    assert report.dead_letters == 0
    assert report.exit_code == 1  # a crash is never a clean run
    assert_accounted(report)


def test_crashed_group_with_no_items_still_fails_the_run(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 3},
            source("Source", [], "Numbers"),
            stage("Broken", "CrashInSetup", "Numbers"),
        ),
    )

    assert groups(report)["Broken"].crashed == per_group(1)
    assert report.dead_letters == 0
    assert report.exit_code == 1
    assert_accounted(report)


def test_crashed_branch_of_a_fan_out_does_not_hold_back_the_other(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 3, "ToSink": 3, "ToBroken": 1},
            source("Source", range(30), "Numbers"),
            stage("Split", "Multiply", "Numbers", ["ToSink", "ToBroken"], factor=1),
            stage("Sink", "Collect", "ToSink", key=key),
            stage("Broken", "CrashInSetup", "ToBroken"),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == list(range(30))
    by_name = groups(report)
    assert (by_name["Broken"].crashed, by_name["Broken"].received, by_name["Broken"].dead_lettered) == (
        per_group(1),
        30,
        30,
    )
    assert by_name["Sink"].processed == 30
    assert sorted(r["item"] for r in dead_letters(tmp_path)) == list(range(30))
    assert report.exit_code == 1
    assert_accounted(report)


def test_group_refusing_to_open_fails_the_run_before_any_thread(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 2},
            source("Source", range(5), "Numbers"),
            stage("Sink", "RefuseOpen", "Numbers"),
        ),
    )

    assert report.finish_reason == "failed"
    assert report.error == "Sink cannot start: ConnectionError: database unreachable"
    assert report.exit_code == 1
    assert not any(started(group) for group in executor.groups.values())
    assert report.lost == 0


@pytest.mark.parametrize("signal_number, exit_code", [(None, 1), (15, 143)])
def test_request_stop_ends_a_busy_run_quickly_with_nothing_lost(tmp_path, key, signal_number, exit_code):
    executor = start(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Slowed": 5},
            source("Source", range(1000), "Numbers"),
            stage("Slow", "Slow", "Numbers", ["Slowed"], instances=2, delay_s=0.02),
            stage("Sink", "Collect", "Slowed", key=key),
        ),
    )
    assert len(fixture_workers.wait_collected(key, 3)) >= 3

    asked = time.monotonic()
    executor.request_stop(signal_number)
    report = finish(executor)
    stopped_in_s = time.monotonic() - asked

    assert stopped_in_s < 5.0, f"the run took {stopped_in_s:.1f}s to stop"
    assert report.finish_reason == "interrupted"
    assert report.signal == signal_number
    assert report.exit_code == exit_code
    assert_accounted(report)
    by_name = groups(report)
    taken = by_name["Source"].processed
    assert 3 <= taken < 1000, "the source should have stopped taking input values"
    assert by_name["Source"].emitted == by_name["Slow"].received
    assert by_name["Slow"].emitted == by_name["Sink"].received
    # Every input value was stored by the sink or dead-lettered exactly once; those no instance took
    # are marked as never started, so the dead-letter file can be replayed.
    stored = fixture_workers.collected(key)
    records = dead_letters(tmp_path)
    assert len(records) == report.dead_letters
    assert {r["group"] for r in records} <= {"Source", "Slow", "Sink"}
    assert sorted(stored + [r["item"] for r in records]) == list(range(1000))
    not_started = [r["item"] for r in records if r["kind"] == "not-started"]
    assert {r["group"] for r in records if r["kind"] == "not-started"} == {"Source"}
    assert sorted(not_started) == list(range(1000 - len(not_started), 1000)) and len(not_started) == 1000 - taken
    assert report.not_started == len(not_started)


def test_request_stop_flushes_a_batching_sink_and_loses_nothing(tmp_path, key):
    executor = start(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Slowed": 5},
            source("Source", range(1000), "Numbers"),
            stage("Slow", "Slow", "Numbers", ["Slowed"], delay_s=0.01),
            stage("Store", "BatchCollect", "Slowed", key=key, batch_size=3, flush_interval_s=600.0),
        ),
    )
    assert len(fixture_workers.wait_collected(key, 3)) >= 3

    executor.request_stop()
    report = finish(executor)

    assert report.finish_reason == "interrupted"
    assert_accounted(report)
    by_name = groups(report)
    stored = [item for batch in fixture_workers.batches(key) for item in batch]
    assert by_name["Store"].stored == len(stored)
    records = dead_letters(tmp_path) if report.dead_letters else []
    assert sorted(stored + [r["item"] for r in records]) == list(range(1000))


def test_batch_worker_flushes_on_batch_size_and_at_done(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 20},
            source("Source", range(10), "Numbers"),
            stage("Store", "BatchCollect", "Numbers", key=key, batch_size=4, flush_interval_s=600.0),
        ),
    )

    # A flush interval of ten minutes: only the size and the end of the stream can flush.
    written = fixture_workers.batches(key)
    if _mode[0] == "threads":
        assert written == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    else:  # the items are shared by 2 processes: full batches of 4, but for one last batch in each
        assert sorted(item for batch in written for item in batch) == list(range(10))
        assert all(len(batch) <= 4 for batch in written) and sum(len(batch) < 4 for batch in written) <= 2
    store = groups(report)["Store"]
    assert (store.received, store.processed, store.stored) == (10, 10, 10)
    assert report.exit_code == 0
    assert_accounted(report)


def test_batch_worker_flushes_when_idle(tmp_path, key):
    executor = start(
        tmp_path,
        pipeline(
            {"Numbers": 20},
            source("Now", range(3), "Numbers"),
            source("Held", range(100, 102), "Numbers", gate=key),
            stage("Store", "BatchCollect", "Numbers", key=key, batch_size=100, flush_interval_s=0.1),
        ),
    )
    try:
        assert sorted(fixture_workers.wait_collected(key, 3)) == [0, 1, 2]
        # Flushed while a producer is still held: neither the size nor DONE did it, being idle did.
        assert executor.groups["Held"].runner.alive()
        assert executor.groups["Store"].runner.alive()
    finally:
        fixture_workers.gate(key).set()
    report = finish(executor)

    written = fixture_workers.batches(key)
    assert sorted(item for batch in written for item in batch) == [0, 1, 2, 100, 101]
    assert len(written) >= 2
    assert groups(report)["Store"].stored == 5
    assert report.exit_code == 0
    assert_accounted(report)


def test_done_is_not_an_item(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 1},
            source("Source", range(3), "Numbers"),
            stage("Sink", "Collect", "Numbers", instances=4, key=key),
        ),
    )

    assert DONE not in fixture_workers.collected(key)
    assert sorted(fixture_workers.collected(key)) == [0, 1, 2]
    assert queues(report)["Numbers"].taken == 3


@pytest.mark.parametrize("mode", ["threads"])
def test_concurrent_stop_requests_stop_the_run_once(tmp_path, key, monkeypatch):
    from core.app import executor as yaml_reader

    path = tmp_path / "pipeline.yaml"
    path.write_text(
        pipeline({"Numbers": 5}, source("Source", range(3), "Numbers"), stage("Sink", "Collect", "Numbers", key=key))
    )
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl")
    stops, go = [], threading.Event()
    for group in executor.groups.values():
        monkeypatch.setattr(group.runner, "stop", lambda close_input, name=group.name: stops.append(name))
    warn = yaml_reader.logger.warning
    monkeypatch.setattr(yaml_reader.logger, "warning", lambda *a, **k: (time.sleep(0.05), warn(*a, **k)))
    callers = [threading.Thread(target=lambda: (go.wait(5), executor.request_stop(15))) for _ in range(4)]
    for caller in callers:
        caller.start()
    go.set()
    for caller in callers:
        caller.join(JOIN_TIMEOUT_S)
        assert not caller.is_alive()

    assert sorted(stops) == ["Sink", "Source"]  # each group told once
