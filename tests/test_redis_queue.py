"""The Redis transport's settling rules, on the local Redis server (the tests' database and key prefix, see
conftest.py), each test in a run of its own: a stale owner cannot settle twice (where plain XACK would let it), a poison item is dead-lettered
with its acknowledgement, a graceful hand-back does not count toward that limit, a live owner's lease is
renewed on a long item, nothing in Redis is ever unpickled, and an end anywhere in the run wakes a waiting read.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from core.base.errors import ItemError
from core.transport.base import DONE, Empty
from core.transport.redis.client import RedisRun
from core.transport.redis.members import Members
from core.transport.redis.queue import RedisQueue

WAIT_S = 10.0


def url() -> str:
    """The tests' Redis (conftest.py sets it for every test)."""
    return os.environ["REDIS_URL"]


def key(run_id: str, *parts: str) -> str:
    """A key of run `run_id` (conftest.py gives each test a key prefix of its own)."""
    return f"{os.environ['REDIS_KEY_PREFIX']}:transport-test:{run_id}:" + ":".join(parts)


class Consumer:
    """One process's view of a queue (its own consumer name), reading into its fetched buffer."""

    def __init__(
        self, run_id: str, name: str, *, visibility_timeout_s: float, max_deliveries: int = 5, prefetch: int = 4
    ) -> None:
        self.run = RedisRun(url(), "transport-test", run_id)
        self.run.process_id = name
        self.queue = RedisQueue(
            "Items",
            100,
            self.run,
            reader="Readers",
            visibility_timeout_s=visibility_timeout_s,
            max_deliveries=max_deliveries,
        )
        self.output = RedisQueue("Out", 100, self.run, reader="Next")
        self.dead: list[tuple[Any, str, str]] = []
        self.queue.on_dead = lambda item, error, kind: self.dead.append((item, error, kind))
        self.queue.fetcher.start(readers=1, prefetch=prefetch)

    def take(self, timeout_s: float = WAIT_S) -> Any:
        return self.queue.get(timeout_s)

    def close(self) -> None:
        self.queue.fetcher.shutdown()
        self.run.redis.close()


@pytest.fixture
def run_id() -> Iterator[str]:
    """A run of the test's own; its keys are deleted afterwards."""
    name = f"transport-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(url())
    keys = list(client.scan_iter(match=key(name, "*")))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def consumers(run_id) -> Iterator[list[Consumer]]:
    made: list[Consumer] = []
    yield made
    for consumer in made:
        consumer.close()


def producer(run_id: str) -> RedisQueue:
    run = RedisRun(url(), "transport-test", run_id)
    queue = RedisQueue("Items", 100, run, reader="Readers")
    queue.stream.create()
    return queue


def outputs(run_id: str) -> list[Any]:
    client = redis.Redis.from_url(url())
    try:
        return [json.loads(fields[b"d"]) for _, fields in client.xrange(key(run_id, "q", "Out"))]
    finally:
        client.close()


def test_a_consumer_whose_item_was_claimed_cannot_settle_it(run_id, consumers):
    source = producer(run_id)
    source.put_many(["item"])
    stale = Consumer(run_id, "machine-b", visibility_timeout_s=0.3)
    consumers.append(stale)
    taken = stale.take()
    assert taken.item == "item"
    stale.queue.freeze()  # B stalls: it neither settles nor renews its lease
    live = Consumer(run_id, "machine-c", visibility_timeout_s=0.3)
    consumers.append(live)

    claimed = live.take()  # C claims it once B's lease is older than the visibility timeout

    assert claimed.item == "item" and claimed.token[0] == taken.token[0]
    client = redis.Redis.from_url(url())
    try:
        # Plain XACK does not look at the owner: B would get 1 back, and with MULTI/EXEC both would emit.
        assert client.xpending_range(stale.queue.key, "Readers", "-", "+", 10)[0]["consumer"] == b"machine-c"
    finally:
        client.close()
    assert stale.queue.settler.settle(taken, ["from B"], (live.output.key,)) is False
    assert live.queue.settler.settle(claimed, ["from C"], (live.output.key,)) is True
    assert outputs(run_id) == ["from C"]  # emitted once, by the owner


def test_an_item_delivered_max_deliveries_times_is_poison(run_id, consumers):
    source = producer(run_id)
    source.put_many(["poison"])
    for attempt in range(3):  # three consumers each take it and die with it (their leases lapse)
        dying = Consumer(run_id, f"dies-{attempt}", visibility_timeout_s=0.2, max_deliveries=3)
        consumers.append(dying)
        assert dying.take().item == "poison"
        dying.queue.freeze()
    last = Consumer(run_id, "last", visibility_timeout_s=0.2, max_deliveries=3)
    consumers.append(last)

    with pytest.raises(Empty):
        last.take(timeout_s=2.0)  # never handed to an instance: dead-lettered as poison on its 4th delivery

    assert [(item, kind) for item, _, kind in last.dead] == [("poison", "poison")]
    assert "delivered 3 times" in last.dead[0][1]
    client = redis.Redis.from_url(url())
    try:
        (record,) = [json.loads(fields[b"r"]) for _, fields in client.xrange(key(run_id, "dead"))]
        assert record["kind"] == "poison" and record["item"] == "poison"
        assert client.xpending(last.queue.key, "Readers")["pending"] == 0  # acknowledged with it
    finally:
        client.close()


def test_a_graceful_hand_back_does_not_count_toward_the_poison_limit(run_id, consumers):
    source = producer(run_id)
    source.put_many(["kept"])
    for turn in range(4):  # more hand-backs than max_deliveries allows deliveries
        polite = Consumer(run_id, f"polite-{turn}", visibility_timeout_s=30, max_deliveries=2, prefetch=1)
        deadline = time.monotonic() + WAIT_S
        while not polite.queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)  # the fetcher has it in this process's buffer, not yet taken
        assert polite.queue.qsize() == 1
        polite.queue.close()  # stops reading: the untaken entry goes back to the stream
        polite.close()
    final = Consumer(run_id, "final", visibility_timeout_s=30, max_deliveries=2)
    consumers.append(final)

    assert final.take().item == "kept"
    assert final.dead == []


def test_a_live_owner_keeps_its_lease_on_a_long_item(run_id, consumers):
    source = producer(run_id)
    source.put_many(["long"])
    owner = Consumer(run_id, "owner", visibility_timeout_s=0.6)
    consumers.append(owner)
    held = owner.take()
    other = Consumer(run_id, "other", visibility_timeout_s=0.6)
    consumers.append(other)

    with pytest.raises(Empty):
        other.take(timeout_s=2.0)  # three visibility timeouts: the owner's fetcher renewed the lease meanwhile

    assert owner.queue.settler.settle(held, ["done"], (owner.output.key,)) is True
    assert outputs(run_id) == ["done"]


def test_an_item_json_cannot_carry_is_that_items_error(run_id):
    queue = producer(run_id)

    with pytest.raises(ItemError, match="cannot be written to a Redis queue"):
        queue.put_many(["fine", threading.Lock()])

    assert queue.redis.xlen(queue.key) == 0  # nothing of the call was added


def test_done_comes_only_once_the_queue_has_ended(run_id, consumers):
    queue = producer(run_id)
    queue.put_many([1, 2])
    reader = Consumer(run_id, "reader", visibility_timeout_s=30)
    consumers.append(reader)
    ended = threading.Event()
    reader.queue.ended = lambda: ended.is_set() and reader.queue.run.redis.xlen(reader.queue.key) == 0
    first, second = reader.take(), reader.take()
    with pytest.raises(Empty):
        reader.take(timeout_s=0.6)  # delivered, but its producers have not ended: no DONE on idleness

    for delivery in (first, second):
        assert reader.queue.settler.settle(delivery, None) is True
    ended.set()

    assert reader.take() is DONE


def test_an_end_wakes_a_read_that_is_waiting_for_entries(run_id):
    """A fetcher waiting on an empty stream is woken by an end anywhere in the run (here: a group ending in
    another process), so it looks at its queue's end at once instead of when its read times out."""
    queue = producer(run_id)
    reader, ender = queue.run.reader(), RedisRun(url(), "transport-test", run_id)
    queue.fetcher._read_client = reader  # noqa: SLF001 - the fetcher's own connection
    queue.run.register_reader(queue.name, reader)
    reader_id = str(reader.client_id())
    returned = threading.Event()

    def read() -> None:
        queue.run.call(queue.fetcher._reader("waiting", 10, 600_000))  # noqa: SLF001 - one read, up to 10 minutes
        returned.set()

    def blocked() -> bool:
        return any(c["id"] == reader_id and c["cmd"] == "xreadgroup" for c in ender.redis.client_list())

    thread = threading.Thread(target=read)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not blocked() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert blocked(), "the read never waited"
        Members(ender).end_group("Producer")  # another process ends a group: every fetcher of the run is woken
        assert returned.wait(WAIT_S), "the read was not woken by the end"
    finally:
        ender.redis.client_unblock(int(reader_id))
        thread.join(WAIT_S)
        reader.close()
        ender.redis.close()
        queue.run.redis.close()
    assert not thread.is_alive()


def test_a_process_running_no_source_does_not_claim_the_run_is_done(run_id, tmp_path):
    """A process started with --only for a stage, waiting for others to join, tells the total is not known
    here; it used to say `0/0 done (100%)` while it waited."""
    import os
    import selectors
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pipeline = tmp_path / "transport-test.yaml"  # the run's keys are <prefix>:transport-test:<run id>:*
    pipeline.write_text(
        "queues:\n  - {name: Items, maxsize: 10, backend: redis}\n"
        "workers:\n"
        "  - {name: Source, location: bench.noop_workers, class: CountSource, input_values: [3], output_queues: [Items]}\n"
        "  - {name: Sink, location: bench.noop_workers, class: Discard, input_queue: Items}\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            str(root / "main.py"),
            "--pipeline",
            str(pipeline),
            "--run-id",
            run_id,
            "--only",
            "Sink",
            "--status-interval",
            "0.2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "REDIS_URL": url(), "DATA_DIR": str(tmp_path), "ENV_FILE": os.devnull},
    )
    status = ""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            deadline = time.monotonic() + 30
            while "status" not in status and time.monotonic() < deadline:
                if selector.select(timeout=1):
                    line = process.stderr.readline()
                    if not line:
                        break
                    status = line if "core.app.status" in line else status
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert "core.app.status" in status, "no status line"
    assert "total not known" in status and "100%" not in status, status
    assert process.returncode == 130


def test_entries_a_reader_holds_leave_room_for_producers(run_id):
    """maxsize bounds what waits to be read, as in a local queue: entries a reader holds (a batching sink's
    batch) do not hold the producer back, or a batch larger than maxsize would wait on itself."""
    queue = producer(run_id)  # maxsize 100
    queue.put_many(list(range(100)))
    client = queue.run.redis
    client.xreadgroup("Readers", "holder", {queue.key: ">"}, count=100)  # all 100 taken, none settled
    room = threading.Event()

    def put_one() -> None:
        queue.put_many([100])
        room.set()

    thread = threading.Thread(target=put_one, daemon=True)
    thread.start()
    try:
        assert room.wait(WAIT_S), "the producer waited for entries a reader holds"
    finally:
        client.xdel(queue.key, *[entry_id for entry_id, _ in client.xrange(queue.key)])  # frees a waiting put
        thread.join(WAIT_S)
        client.close()
    assert not thread.is_alive()


def test_a_foreign_entry_with_a_negative_delivery_count_still_becomes_poison(run_id, consumers):
    """Someone else's entry says it was delivered -5 times before: that must not put off the poison limit
    (it used to: -5 + 2 deliveries is under max_deliveries 1, so it was handed out again and again)."""
    source = producer(run_id)
    source.redis.xadd(source.key, {"d": '"foreign"', "n": "-5"})
    first = Consumer(run_id, "first", visibility_timeout_s=0.2, max_deliveries=1)
    consumers.append(first)
    assert first.take().item == "foreign"
    first.queue.freeze()  # it dies with the entry: its lease lapses
    last = Consumer(run_id, "last", visibility_timeout_s=0.2, max_deliveries=1)
    consumers.append(last)

    with pytest.raises(Empty):
        last.take(timeout_s=2.0)  # never handed to an instance: poison on its second delivery

    assert [(item, kind) for item, _, kind in last.dead] == [("foreign", "poison")]


def test_entries_a_refused_hand_back_leaves_are_claimable_at_once():
    """A process stops reading with entries fetched and never taken, and the server refuses the hand-back
    (out of memory: it writes each entry again). They are released instead, for another process to claim at
    once, their delivery not counted; they used to wait out visibility_timeout_s (30 s here), and close()
    raised."""
    from redis_server import RedisServer

    with RedisServer(appendonly=False) as server:
        runs = [RedisRun(server.url(), "transport-test", "hand-back") for _ in range(2)]
        runs[0].process_id, runs[1].process_id = "stopping", "taking-over"
        stopping, taking_over = (
            RedisQueue("Items", 100, run, reader="Readers", visibility_timeout_s=30) for run in runs
        )
        try:
            stopping.stream.create()
            stopping.put_many(["x", "y", "z"])
            stopping.fetcher.start(readers=1, prefetch=4)
            deadline = time.monotonic() + WAIT_S
            while stopping.qsize() < 3 and time.monotonic() < deadline:
                time.sleep(0.01)  # the fetcher has them in this process's buffer, none taken
            assert stopping.qsize() == 3
            with server.client() as client:
                client.config_set("maxmemory", 1)
                try:
                    stopping.close()
                finally:
                    client.config_set("maxmemory", 0)
                assert len(client.xpending_range(stopping.key, "Readers", "-", "+", 10)) == 3  # not handed back

            taking_over.fetcher.start(readers=1, prefetch=4)
            started = time.monotonic()
            got = [taking_over.get(WAIT_S) for _ in range(3)]
            waited_s = time.monotonic() - started
        finally:
            stopping.fetcher.shutdown()
            taking_over.fetcher.shutdown()
            for run in runs:
                run.redis.close()

    assert sorted(delivery.item for delivery in got) == ["x", "y", "z"]
    assert waited_s < 5, f"claimed after {waited_s:.1f}s"
    assert [delivery.token[1] for delivery in got] == [1, 1, 1]  # the refused hand-back's delivery not counted


def test_a_tests_runs_are_in_the_tests_database_under_a_prefix_of_its_own(tmp_path, redis_keys_of_the_test):
    """conftest.py sends every test's Redis runs, in this process or in `python main.py`, to the tests'
    database under the test's own key prefix (and deletes them afterwards), never into database 0 where a
    user's runs are, as yp:... keys that lived a day."""
    import subprocess
    import sys
    from pathlib import Path

    from core.app.executor import YamlPipelineExecutor

    root = Path(__file__).resolve().parent.parent
    pipeline = tmp_path / "transport-test.yaml"
    pipeline.write_text(
        "queues:\n  - {name: Items, backend: redis}\n"
        "workers:\n"
        "  - {name: Source, location: bench.noop_workers, class: CountSource, input_values: [3], output_queues: [Items]}\n"
        "  - {name: Sink, location: bench.noop_workers, class: Discard, input_queue: Items}\n"
    )
    executor = YamlPipelineExecutor(pipeline, dead_letter_path=tmp_path / "dl.jsonl")
    executor.start()
    executor.join(30)
    assert not executor.is_alive() and executor.report.finish_reason == "finished"
    process = subprocess.run(
        [sys.executable, str(root / "main.py"), "--pipeline", str(pipeline), "--quiet"],
        cwd=root,
        env={**os.environ, "DATA_DIR": str(tmp_path), "ENV_FILE": os.devnull},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert process.returncode == 0, process.stderr[-2000:]

    assert url().endswith("/15") and redis_keys_of_the_test.startswith("yptest-")
    client = redis.Redis.from_url(url())
    users = redis.Redis.from_url(url().rsplit("/", 1)[0] + "/0")
    try:
        runs = {key.decode().split(":")[2] for key in client.scan_iter(match=f"{redis_keys_of_the_test}:*")}
        assert executor.distributed.run_id in runs and len(runs) == 2, runs
        for run_id in runs:
            assert not list(users.scan_iter(match=f"*{run_id}*")), f"run {run_id} wrote to database 0"
    finally:
        client.close()
        users.close()
