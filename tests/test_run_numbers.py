"""The numbers a run prints are the ledger's, and they add up: in the live status, the report table, the summary
line and --stats-json. Per queue, what was put plus what it refused is what its producers emitted, and what its
reader received is what it took plus what it refused; per group, received = processed + dead_lettered; progress
says how many items were stored and how many dead-lettered.

Each test runs a real executor on the tiny workers of fixture_workers (threads and local queues).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import fixture_workers
import pytest
from test_executor import finish, groups, pipeline, queues, source, stage

from core.app.executor import YamlPipelineExecutor
from core.app.status import Progress, status_line
from core.transport.base import Delivery
from core.transport.local import LocalQueue

WAIT_S = 10.0


@pytest.fixture
def key():
    """A name of its own for this test's sink and gate, forgotten afterwards."""
    name = f"numbers-{uuid.uuid4().hex[:8]}"
    yield name
    fixture_workers.gate(name).set()  # a failed test must not leave a stage waiting at its gate
    fixture_workers.forget(name)


def start(tmp_path: Path, text: str, **kwargs) -> YamlPipelineExecutor:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl", **kwargs)
    executor.start()
    return executor


def wait_for(condition, what: str) -> None:
    """Wait until `condition()` holds, looking every 5 ms for at most WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def assert_the_books_add_up(executor: YamlPipelineExecutor, report) -> None:
    """Per queue: put + refused == what its producers emitted, and its reader received taken + refused;
    per group: received == processed + dead_lettered; in the stats as in the report."""
    by_group, data = groups(report), report.to_dict()
    for queue in report.queues:
        producers = [w.name for w in executor.spec.producers(queue.name)]
        reader = executor.spec.consumer(queue.name).name
        assert queue.put + queue.refused == sum(by_group[name].emitted for name in producers), queue
        assert by_group[reader].received == queue.taken + queue.refused, queue
        assert data["queues"][queue.name]["refused"] == queue.refused
    for group in report.groups:
        assert group.received == group.processed + group.dead_lettered + group.returned, group
        assert group.in_flight == 0, group
    assert report.lost == 0


def test_an_output_a_closed_queue_refused_is_counted_by_the_queue(tmp_path, key):
    """Stopped while the source waits to put item 6 into a full queue: that item was emitted and refused,
    never put (the run said Numbers put 1875 against Source emitted 1876)."""
    executor = start(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Out": 100},
            source("Source", range(50), "Numbers"),
            stage("Middle", "Source", "Numbers", ["Out"], gate=key),  # holds item 0 until the gate opens
            stage("Sink", "Collect", "Out", key=key),
        ),
    )
    source_group, numbers = executor.groups["Source"], executor.queues["Numbers"]
    wait_for(
        lambda: source_group.counts().received == 7 and numbers.qsize() == 5,
        "Middle holding item 0, Numbers full with 1-5, Source holding 6",
    )

    executor.request_stop()
    fixture_workers.gate(key).set()
    report = finish(executor)

    assert fixture_workers.collected(key) == [0]
    by_group, by_queue = groups(report), queues(report)
    assert (by_group["Source"].emitted, by_queue["Numbers"].put, by_queue["Numbers"].refused) == (7, 6, 1)
    assert (by_group["Middle"].received, by_group["Middle"].processed, by_group["Middle"].dead_lettered) == (7, 1, 6)
    assert_the_books_add_up(executor, report)
    letters = [json.loads(line) for line in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert sorted((letter["group"], letter["item"]) for letter in letters) == sorted(
        [("Source", n) for n in range(7, 50)] + [("Middle", n) for n in range(1, 7)]
    )

    # Progress: 7 items came from the source; 1 stored, 6 dead-lettered on the way (not "7/7 done").
    snap = executor.snapshot()
    assert (snap.total, snap.settled, snap.dead_lettered) == (7, 7, 6)
    line = status_line(snap, Progress().update(snap))
    assert line.endswith("; 7/7 done (100%): 1 stored, 6 dead-lettered"), line
    assert "Middle 0/1 alive, 7 in, 1 done, 6 dead-lettered, 1 out, 0 failed, " in line, line
    summary = report.summary()
    assert "Middle 7 in, 1 done, 6 dead-lettered, 1 out" in summary and "Sink 1 in, 1 done" in summary, summary
    table = report.table().splitlines()
    assert table[0].split() == [
        "group",
        "inst",
        "received",
        "done",
        "dead",
        "emitted",
        "stored",
        "failed",
        "busy%",
        "items/s",
    ]
    assert table[2].split()[:6] == ["Middle", "1", "7", "1", "6", "1"]
    assert table[4].split() == [
        "queue",
        "max",
        "put",
        "preloaded",
        "refused",
        "taken",
        "left",
        "high",
        "full%",
        "nonempty%",
    ]
    assert table[5].split()[:7] == ["Numbers", "5", "6", "0", "1", "6", "0"]


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_items_a_replay_preloads_beyond_maxsize_are_counted_as_preloaded(tmp_path, key, backend):
    """A replay puts its items in at once, beyond maxsize (a replay showed high water 1003 over maxsize 1000,
    and put counted items nobody emitted); progress counts them in its total. The same for a Redis queue."""
    text = pipeline(
        {"Numbers": 10, "Out": 100},
        source("Source", [100], "Numbers"),
        stage("Middle", "Source", "Numbers", ["Out"]),
        stage("Sink", "Collect", "Out", key=key),
    )
    if backend == "redis":
        text = text.replace(
            "  - name: Numbers\n    maxsize: 10\n", "  - name: Numbers\n    maxsize: 10\n    backend: redis\n"
        )
        assert "backend: redis" in text
    executor = start(tmp_path, text, replay={"Middle": list(range(12))})
    report = finish(executor)

    assert sorted(fixture_workers.collected(key)) == list(range(12))
    numbers = queues(report)["Numbers"]
    assert (numbers.put, numbers.preloaded, numbers.refused, numbers.taken, numbers.left) == (0, 12, 0, 12, 0)
    assert groups(report)["Source"].emitted == 0
    assert numbers.high_water <= numbers.maxsize + numbers.preloaded
    assert report.to_dict()["queues"]["Numbers"]["preloaded"] == 12
    assert_the_books_add_up(executor, report)
    snap = executor.snapshot()
    assert (snap.total, snap.settled, snap.dead_lettered) == (12, 12, 0)
    assert status_line(snap, Progress().update(snap)).endswith("; 12/12 done (100%): 12 stored, 0 dead-lettered")


def test_a_stopped_run_with_a_source_that_fails_some_tells_stored_and_dead_lettered_apart(tmp_path, key):
    """After a stop, progress told dead-lettered items as done ("1759/1859 done (95%)" with 100 stored)."""
    executor = start(
        tmp_path,
        pipeline(
            {"Numbers": 100, "Out": 100, "Stored": 100},
            source("Source", range(40), "Numbers"),
            stage("Fail", "FailOdd", "Numbers", ["Out"]),
            stage("Middle", "Source", "Out", ["Stored"], gate=key),
            stage("Sink", "Collect", "Stored", key=key),
        ),
    )
    wait_for(
        lambda: executor.groups["Fail"].counts().received == 40 and executor.groups["Middle"].counts().received,
        "every item through Fail and Middle at its gate",
    )

    executor.request_stop()  # Out is closed: the 19 even numbers queued there are dead-lettered
    fixture_workers.gate(key).set()
    report = finish(executor)

    snap = executor.snapshot()
    assert fixture_workers.collected(key) == [0]
    assert (snap.total, snap.settled, snap.dead_lettered) == (40, 40, 39)
    assert status_line(snap, Progress().update(snap)).endswith("; 40/40 done (100%): 1 stored, 39 dead-lettered")
    assert_the_books_add_up(executor, report)


# --- the local queue's own counts -------------------------------------------------------------------------


def test_items_given_back_are_untaken_not_put_twice():
    queue = LocalQueue("Q", 10)
    queue.put_many([1, 2, 3])
    items, _ = queue.get_items(3)

    queue.give_back([Delivery(item) for item in items])

    assert (queue.put_count, queue.get_count, queue.qsize()) == (3, 0, 3)
    assert queue.get_items(3)[0] == [1, 2, 3] and queue.get_count == 3


def test_a_queue_counts_what_it_refused_and_what_its_close_handed_on():
    queue, rejected = LocalQueue("Q", 2), []
    queue.on_reject = rejected.append
    queue.put_many([1, 2])
    queue.preload([3])

    assert queue.close() == 3
    assert queue.put(4) is False and queue.put_many([5, 6]) == 0.0 and queue.put_nowait(7) is False
    assert queue.put_some([8]) == 1 and queue.preload([9]) == 0

    assert rejected == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert (queue.put_count, queue.preloaded, queue.refused, queue.get_count, queue.high_water) == (2, 1, 6, 3, 3)
