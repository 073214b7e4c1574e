"""`processes: P` through `python main.py`, as a user runs it: worker processes killed mid-item, crashing in
setup, items and outputs that cannot be pickled, Ctrl-C to the whole process group, the parent killed,
and no process left behind after any of it.

Each run carries a marker in its environment, which its worker processes inherit, so a test can find
every process the run started (in /proc) and check that none outlives it. Every input item is checked
against what the sink collected and the dead letters.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fixture_workers
import pytest

from conftest import ROOT

RUN_TIMEOUT_S = 60
POLL_S = 0.02


def processes_marked(marker: str) -> list[int]:
    """Pids of the live processes whose environment holds `marker` (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (
                f"PIPELINE_TEST_MARK={marker}".encode() in (entry / "environ").read_bytes().split(b"\0")
                and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            ):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class Run:
    """`python main.py --pipeline PATH` in a session of its own, output in files, found by its marker."""

    def __init__(self, tmp_path: Path, text: str, *args: str) -> None:
        self.folder = tmp_path
        self.pipeline = tmp_path / "pipeline.yaml"
        self.pipeline.write_text(text)
        self.marker = uuid.uuid4().hex
        self.stats_path, self.letters_path = tmp_path / "stats.json", tmp_path / "dl.jsonl"
        self.stderr_path = tmp_path / "stderr.txt"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "POSTGRES_", "PIPELINE_"))}
        env.update(
            ENV_FILE=os.devnull,
            DATA_DIR=str(tmp_path / "data"),
            DEAD_LETTER_PATH=str(self.letters_path),
            PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
            PIPELINE_TEST_MARK=self.marker,
        )
        with self.stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "main.py"),
                    "--pipeline",
                    str(self.pipeline),
                    "--quiet",
                    "--stats-json",
                    str(self.stats_path),
                    *args,
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )  # its own process group, as a terminal gives a command

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        for pid in [self.proc.pid, *processes_marked(self.marker)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def log(self) -> str:
        return self.stderr_path.read_text()

    def wait_log(self, pattern: str, timeout_s: float = 30) -> re.Match:
        """The first match of `pattern` in the log, waiting for it."""
        deadline = time.monotonic() + timeout_s
        while not (found := re.search(pattern, self.log())):
            assert self.proc.poll() is None or re.search(pattern, self.log()), (
                f"main ended before /{pattern}/:\n{self.log()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"no /{pattern}/ in the log after {timeout_s}s"
            time.sleep(POLL_S)
        return found

    def wait(self, timeout_s: float = RUN_TIMEOUT_S) -> int:
        self.stdout, _ = self.proc.communicate(timeout=timeout_s)
        self.ended = time.monotonic()
        return self.proc.returncode

    @property
    def stats(self) -> dict:
        return json.loads(self.stats_path.read_text())

    @property
    def letters(self) -> list[dict]:
        return (
            [json.loads(line) for line in self.letters_path.read_text().splitlines()]
            if self.letters_path.exists()
            else []
        )


def pipeline(
    sink_key: str, stage: str, *, items: int = 40, processes: int = 2, instances: int = 2, maxsize: int = 10, **params
) -> str:
    """Source (items 0..items-1) -> a stage of `stage` in worker processes -> a Collect sink recording to files."""
    given = "".join(f"      {name}: {json.dumps(value)}\n" for name, value in params.items())
    return (
        f"queues:\n  - name: Numbers\n    maxsize: {maxsize}\n  - name: Done\nworkers:\n"
        f"  - name: Source\n    location: fixture_workers\n    class: Source\n"
        f"    input_values: {list(range(items))}\n    output_queues: [Numbers]\n"
        f"  - name: Stage\n    location: fixture_workers\n    class: {stage}\n    processes: {processes}\n"
        f"    instances: {instances}\n    input_queue: Numbers\n    output_queues: [Done]\n"
        + (f"    params:\n{given}" if given else "")
        + f"  - name: Sink\n    location: fixture_workers\n    class: Collect\n    input_queue: Done\n"
        f"    params:\n      key: {sink_key}\n"
    )


def accounted(run: Run, key: str, items: int) -> list[dict]:
    """Every input item was collected or dead-lettered exactly once, and the stats add up; the letters."""
    letters = run.letters
    got = sorted(fixture_workers.collected(key) + [letter["item"] for letter in letters])
    assert got == list(range(items)), f"collected + dead-lettered != input\n{run.log()[-3000:]}"
    stats = run.stats
    assert stats["lost"] == 0 and stats["dead_letters"] == len(letters)
    for name, group in stats["groups"].items():
        assert group["received"] == group["processed"] + group["dead_lettered"] and group["in_flight"] == 0, name
    return letters


def no_process_left(run: Run, within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while left := processes_marked(run.marker):
        assert time.monotonic() < deadline, f"processes still alive {within_s}s after the run: {left}"
        time.sleep(POLL_S)


def test_a_worker_process_killed_mid_item_loses_only_what_it_held(tmp_path):
    key = str(tmp_path / "sink")
    with Run(tmp_path, pipeline(key, "Slow", items=40, delay_s=0.2)) as run:
        pid = int(run.wait_log(r"Stage-p0: worker process started \(pid (\d+)\)").group(1))
        run.wait_log(r"Stage-p1: worker process started")
        fixture_workers.wait_collected(key, 6, timeout_s=30)  # both processes are at work
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        replaced = run.wait_log(r"Stage-p0: replaced by pid (\d+) \(restart")
        replaced_in_s = time.monotonic() - killed
        code = run.wait()
    no_process_left(run)

    letters = accounted(run, key, 40)
    assert code == 1
    crashed = [letter for letter in letters if letter["kind"] == "crashed"]
    assert letters == crashed and 1 <= len(crashed) <= 2, letters  # only what its 2 instances held
    assert all("killed by SIGKILL" in letter["error"] for letter in crashed)
    assert replaced_in_s < 1.0 + 0.5, f"the replacement came {replaced_in_s:.2f}s after the kill"  # 0.5: log polling
    assert int(replaced.group(1)) != pid
    assert run.stats["groups"]["Stage"]["crashed"] == 1


def test_worker_processes_crashing_in_setup(tmp_path):
    key = str(tmp_path / "sink")
    with Run(tmp_path, pipeline(key, "CrashInSetup", items=20)) as run:
        code = run.wait()
    no_process_left(run)

    letters = accounted(run, key, 20)
    assert code == 1 and fixture_workers.collected(key) == []
    assert {letter["group"] for letter in letters} == {"Stage"} and len(letters) == 20
    assert run.stats["groups"]["Stage"]["crashed"] == 4  # 2 processes x 2 instances
    assert "replaced by pid" not in run.log()  # an exception in Python is no reason to start a process again


def test_an_item_that_cannot_be_pickled_is_that_items_error(tmp_path):
    key = str(tmp_path / "sink")
    text = (
        pipeline(key, "Unpicklable", items=10, bad=4)
        .replace(
            "  - name: Sink",
            "  - name: After\n    location: fixture_workers\n    class: Multiply\n    processes: 1\n"
            "    input_queue: Done\n    output_queues: [Final]\n    params:\n      factor: 1\n  - name: Sink",
        )
        .replace("input_queue: Done\n    params:\n      key", "input_queue: Final\n    params:\n      key")
        .replace("  - name: Done\n", "  - name: Done\n  - name: Final\n")
    )
    with Run(tmp_path, text) as run:
        code = run.wait()
    no_process_left(run)

    letters = run.letters
    assert code == 1
    # Item 4 became a lock in Stage's process: its output could not leave the process, so item 4 is Stage's
    # dead letter; nothing else was lost.
    assert [(letter["group"], letter["item"]) for letter in letters] == [("Stage", 4)]
    assert "cannot be sent out of the worker process" in letters[0]["error"] and "pickle" in letters[0]["error"]
    assert sorted(fixture_workers.collected(key)) == [n for n in range(10) if n != 4]
    # The warning names the group and the item, not the worker process's own number for it.
    assert re.search(r"WARNING .*Stage-p\d failed on 4: ItemError: its output cannot be sent out", run.log()), (
        run.log()[-2000:]
    )


def test_an_item_that_cannot_be_pickled_into_a_worker_process(tmp_path):
    key = str(tmp_path / "sink")
    text = (
        pipeline(key, "Multiply", items=10, processes=1, factor=1)
        .replace("class: Source\n", "class: Unpicklable\n")
        .replace("output_queues: [Numbers]\n", "output_queues: [Numbers]\n    params:\n      bad: 6\n")
    )
    with Run(tmp_path, text) as run:
        code = run.wait()
    no_process_left(run)

    letters = run.letters
    assert code == 1
    assert [letter["group"] for letter in letters] == ["Stage"] and "cannot be sent to a worker process" in letters[0][
        "error"
    ]
    assert sorted(fixture_workers.collected(key)) == [n for n in range(10) if n != 6]
    stage = run.stats["groups"]["Stage"]
    assert (stage["received"], stage["processed"], stage["dead_lettered"]) == (10, 9, 1)


def test_ctrl_c_twice_to_the_process_group(tmp_path):
    key = str(tmp_path / "sink")
    # The source puts all 400 at once (no put left half done when the stop comes): what each stage holds
    # at the second Ctrl-C is then exactly what the exit must record.
    with Run(tmp_path, pipeline(key, "Slow", items=400, maxsize=1000, delay_s=0.5), "--shutdown-timeout", "30") as run:
        run.wait_log(r"Stage-p1: worker process started")
        fixture_workers.wait_collected(key, 4, timeout_s=30)
        os.killpg(run.proc.pid, signal.SIGINT)  # as a terminal does: every process of the group gets it
        run.wait_log("stop requested by signal 2")
        again = time.monotonic()
        os.killpg(run.proc.pid, signal.SIGINT)
        code = run.wait(10)
        exited_in_s = run.ended - again
    no_process_left(run)

    assert code == 130 and exited_in_s < 2.0, (code, exited_in_s)
    letters = accounted(run, key, 400)
    assert run.stats["finish_reason"] == "forced"
    assert any(letter["kind"] == "abandoned" for letter in letters)
    assert "Traceback" not in run.log()  # the worker processes ignored Ctrl-C: no KeyboardInterrupt in them


def test_ctrl_c_once_stops_the_worker_processes_cleanly(tmp_path):
    key = str(tmp_path / "sink")
    with Run(tmp_path, pipeline(key, "Slow", items=400, delay_s=0.1), "--shutdown-timeout", "10") as run:
        run.wait_log(r"Stage-p1: worker process started")
        fixture_workers.wait_collected(key, 4, timeout_s=30)
        os.killpg(run.proc.pid, signal.SIGINT)
        code = run.wait(20)
    no_process_left(run)

    assert code == 130
    letters = accounted(run, key, 400)
    assert run.stats["finish_reason"] == "interrupted"
    assert {letter["kind"] for letter in letters} <= {"not-started", "stopping"}  # nothing in hand was lost


def test_the_parent_killed_takes_its_worker_processes_with_it(tmp_path):
    key = str(tmp_path / "sink")
    with Run(tmp_path, pipeline(key, "Slow", items=400, delay_s=0.5)) as run:
        run.wait_log(r"Stage-p1: worker process started")
        fixture_workers.wait_collected(key, 2, timeout_s=30)
        assert len(processes_marked(run.marker)) >= 3  # main, and the 2 worker processes (and the fork server)
        run.proc.kill()
        run.wait(10)
        no_process_left(run, within_s=2.0)


@pytest.mark.parametrize("processes", [1, 2])
def test_asyncio_inside_worker_processes(tmp_path, processes):
    key = str(tmp_path / "sink")
    with Run(tmp_path, pipeline(key, "AsyncDouble", items=50, processes=processes, instances=8, delay_s=0.05)) as run:
        code = run.wait()
    no_process_left(run)

    assert code == 0, run.log()[-3000:]
    assert sorted(fixture_workers.collected(key)) == [2 * n for n in range(50)]
    assert run.stats["groups"]["Stage"]["mode"] == f"processes ({processes} x 8 async)"


def test_worker_processes_reading_a_redis_queue(tmp_path):
    key = str(tmp_path / "sink")
    text = (
        pipeline(key, "FailOdd", items=60)
        .replace("  - name: Numbers\n    maxsize: 10\n", "  - name: Numbers\n    maxsize: 10\n    backend: redis\n")
        .replace("  - name: Done\n", "  - name: Done\n    backend: redis\n")
    )
    with Run(tmp_path, text) as run:
        code = run.wait()
    no_process_left(run)

    letters = accounted(run, key, 60)
    assert code == 1
    assert sorted(letter["item"] for letter in letters) == list(range(1, 60, 2))
    assert sorted(fixture_workers.collected(key)) == list(range(0, 60, 2))
    assert run.stats["groups"]["Stage"]["mode"] == "processes (2 x 2 threads)"


def test_a_batching_sink_in_worker_processes_flushes_once_nothing_more_comes_from_redis(tmp_path):
    """Each process holds a partial batch it would only write after flush_interval_s (600 s); the Redis queue
    sees entries held and nothing new, and nudges the readers: the processes must flush then (the nudge is
    not an item, and must not reach a worker as one)."""
    key = str(tmp_path / "batches")
    text = (
        "queues:\n  - name: Numbers\n    backend: redis\nworkers:\n"
        "  - name: Source\n    location: fixture_workers\n    class: Source\n"
        f"    input_values: {list(range(10))}\n    output_queues: [Numbers]\n"
        "  - name: Store\n    location: fixture_workers\n    class: BatchCollect\n    processes: 2\n"
        "    instances: 1\n    input_queue: Numbers\n"
        f"    params:\n      key: {key}\n      batch_size: 100\n      flush_interval_s: 600\n"
    )
    with Run(tmp_path, text) as run:
        code = run.wait(timeout_s=60)
    no_process_left(run)

    assert code == 0, run.log()[-3000:]
    stored = [item for batch in fixture_workers.batches(key) for item in batch]
    assert sorted(stored) == list(range(10)) and run.letters == []
    assert run.stats["groups"]["Store"]["stored"] == 10


def test_an_error_handling_a_worker_processs_messages_ends_that_process_not_the_run(tmp_path, monkeypatch):
    """A bug of ours in the runner's handling of what a worker process sends (the one 9bfdcfe fixed raised
    there) must not leave the run waiting for that process forever: it is ended as if it had died, what its
    instances held is dead-lettered, a replacement takes the rest, and the run ends with every item accounted."""
    from core.app.executor import YamlPipelineExecutor
    from core.modes.unit_reports import Reports

    handle_batch, batches = Reports.handle_batch, []

    def fails_the_first_time(self, messages):
        batches.append(len(messages))
        if len(batches) == 1:
            raise RuntimeError("a bug in handling a batch of messages")
        return handle_batch(self, messages)

    monkeypatch.setattr(Reports, "handle_batch", fails_the_first_time)
    key = str(tmp_path / "sink")
    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline(key, "AsyncDouble", items=20, processes=1, instances=4, delay_s=0.01))
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl", monitor_interval_s=0.05)
    executor.start()
    executor.join(RUN_TIMEOUT_S)
    assert not executor.is_alive(), "the run did not end"

    letters = (
        [json.loads(line) for line in (tmp_path / "dl.jsonl").read_text().splitlines()]
        if (tmp_path / "dl.jsonl").exists()
        else []
    )
    doubled = sorted(fixture_workers.collected(key))
    assert sorted([n // 2 for n in doubled] + [letter["item"] for letter in letters]) == list(range(20))
    assert all(
        letter["kind"] == "crashed" and "what it sent could not be handled" in letter["error"] for letter in letters
    ), letters
    stage = {group.name: group for group in executor.report.groups}["Stage"]
    assert stage.crashed >= 1 and executor.report.exit_code == 1


def test_a_worker_process_does_not_load_the_config_stack(tmp_path):
    key = str(tmp_path / "sink")
    with Run(
        tmp_path,
        pipeline(key, "Loaded", items=4, processes=1, instances=1, module="yaml"),
        "--set",
        "workers.Stage.instances=1",
    ) as run:  # a --set's line is the loader's own type
        code = run.wait()
    no_process_left(run)

    assert code == 0, run.log()[-3000:]
    assert sorted(fixture_workers.collected(key)) == [[n, False] for n in range(4)]  # PyYAML: 18 ms a process


@pytest.mark.parametrize("exit_code", [0, 3], ids=["SIGKILL", "os._exit"])
def test_a_poison_item_costs_only_itself(tmp_path, exit_code):
    """A worker process that dies on item 3 of 10 (one process, one instance): item 3 is dead-lettered as
    crashed after one delivery, the replacement takes the rest, and the other 9 are stored."""
    key = str(tmp_path / "sink")
    with Run(
        tmp_path, pipeline(key, "DiesOn", items=10, processes=1, instances=1, die_on=[3], exit_code=exit_code)
    ) as run:
        code = run.wait()
    no_process_left(run)

    letters = accounted(run, key, 10)
    assert [(letter["item"], letter["kind"]) for letter in letters] == [(3, "crashed")], letters
    assert sorted(fixture_workers.collected(key)) == [n for n in range(10) if n != 3]
    assert run.log().count("replaced by pid") == 1  # one restart, not every restart used up on item 3
    assert code == 1 and run.stats["groups"]["Stage"]["crashed"] == 1


def test_worker_processes_dying_on_two_items_of_2000_lose_only_those(tmp_path):
    """One instance per process: a process that dies holds only the item it dies on. (With two, the other
    instance's item in hand at that moment is dead-lettered as crashed too, as it should be: it may have been half
    done. Seen once under load, item 1402 beside 1500; that case is the design, not a loss.)"""
    key = str(tmp_path / "sink")
    with Run(
        tmp_path,
        pipeline(key, "DiesOn", items=2000, processes=2, instances=1, maxsize=1000, die_on=[500, 1500], exit_code=3),
    ) as run:
        code = run.wait()
    no_process_left(run)

    letters = accounted(run, key, 2000)
    assert sorted((letter["item"], letter["kind"]) for letter in letters) == [(500, "crashed"), (1500, "crashed")]
    assert all("exit code 3" in letter["error"] for letter in letters)
    assert code == 1 and run.stats["groups"]["Stage"]["crashed"] == 2


def test_a_worker_process_whose_pipe_closed_is_killed_before_it_is_replaced(tmp_path):
    key = str(tmp_path / "sink")
    marks = str(tmp_path / "after-pipe")
    with Run(
        tmp_path, pipeline(key, "ClosesItsPipe", items=10, processes=1, instances=1, at=2, key=marks, sleep_s=8.0)
    ) as run:
        old = int(run.wait_log(r"Stage-p0: worker process started \(pid (\d+)\)").group(1))
        run.wait_log(r"Stage-p0: replaced by pid")
        assert old not in processes_marked(run.marker), "replaced while the old process was still running"
        code = run.wait()
    no_process_left(run)

    letters = accounted(run, key, 10)
    assert [(letter["item"], letter["kind"]) for letter in letters] == [(2, "crashed")]
    assert fixture_workers.collected(marks) == []  # the item dead-lettered as crashed was never finished too
    assert code == 1
