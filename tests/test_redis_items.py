"""What one item does to a run with Redis queues (issue 16, items 3, 6, 9, 22, 23): an output no queue of the
fan-out can take fails its item before anything is sent; an entry that cannot be read is dead-lettered, never
the end of the reading thread; a generator's outputs for Redis are staged there, not held in memory, and
moved with the acknowledgement; an item the server refuses for its size is that item's error; and a run
whose keys vanish counts what went with them.

Each runs YamlPipelineExecutor in this process, its queues in a run of its own (no run id) on the tests'
Redis (conftest.py), or on a redis-server of the test's own where the server itself is part of the case.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fixture_workers
import pytest
import redis
import redis_fixture_workers
from redis_server import RedisServer

from core.app.executor import YamlPipelineExecutor
from core.base.errors import ItemError, Returned
from core.run.redis_exits import RedisExits
from core.transport.redis.client import MAX_BULK_BYTES, RedisRun
from core.transport.redis.queue import RedisQueue
from core.transport.redis.settle import STAGE_AFTER_CHARS

JOIN_TIMEOUT_S = 30.0
WAIT_S = 10.0


@pytest.fixture
def key() -> Iterator[str]:
    """A name of this test's own for its sinks and gates, forgotten afterwards."""
    name = f"items-{uuid.uuid4().hex[:8]}"
    yield name
    fixture_workers.gate(name).set()
    fixture_workers.forget(name)
    redis_fixture_workers.gate(name).set()
    redis_fixture_workers.forget(name)


def start(tmp_path: Path, text: str) -> YamlPipelineExecutor:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl", monitor_interval_s=600)
    executor.start()
    return executor


def finish(executor: YamlPipelineExecutor) -> Any:
    executor.join(JOIN_TIMEOUT_S)
    assert not executor.is_alive(), "the run did not end"
    assert executor.report is not None
    return executor.report


def letters(tmp_path: Path) -> list[dict]:
    path = tmp_path / "dl.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.01)
    return result


def client_of(executor: YamlPipelineExecutor) -> redis.Redis:
    return redis.Redis.from_url(executor.distributed.url)


# --- 3. fan-out to a local and a Redis queue ------------------------------------------------------


@pytest.mark.parametrize("numbers, processes", [("local", 0), ("local", 1), ("redis", 0)])
def test_an_output_one_queue_of_the_fan_out_cannot_take_is_sent_nowhere(tmp_path, key, numbers, processes):
    """Item 3 becomes a set: JSON cannot carry it to ToRedis, so it is dead-lettered, and ToLocal must not get
    it either (it used to: stored by one sink and dead-lettered at once)."""
    executor = start(
        tmp_path,
        f"""
        queues:
          - {{name: Numbers, backend: {numbers}}}
          - {{name: ToLocal}}
          - {{name: ToRedis, backend: redis}}
        workers:
          - {{name: Source, location: fixture_workers, class: Source, input_values: {list(range(10))},
             output_queues: [Numbers]}}
          - {{name: Stage, location: redis_fixture_workers, class: SetFor, input_queue: Numbers,
             output_queues: [ToLocal, ToRedis], processes: {processes}}}
          - {{name: LocalSink, location: fixture_workers, class: Collect, input_queue: ToLocal,
             params: {{key: {key}-local}}}}
          - {{name: RedisSink, location: fixture_workers, class: Collect, input_queue: ToRedis,
             params: {{key: {key}-redis}}}}
        """,
    )
    report = finish(executor)

    expected = [n for n in range(10) if n != 3]
    assert sorted(fixture_workers.collected(f"{key}-local"), key=repr) == expected
    assert sorted(fixture_workers.collected(f"{key}-redis")) == expected
    (letter,) = letters(tmp_path)
    assert letter["group"] == "Stage" and letter["kind"] == "failed", letter
    assert "cannot be written to a Redis queue" in letter["error"], letter
    assert report.finish_reason == "finished" and report.lost == 0, report
    fixture_workers.forget(f"{key}-local"), fixture_workers.forget(f"{key}-redis")


def exits_over(queue: RedisQueue, outputs: list[Any]) -> Any:
    """A group's exits without a group: what they need of one."""
    group = SimpleNamespace(
        name="G",
        input=queue,
        outputs=outputs,
        abandon=lambda *a, **k: 0,
        unsettled=lambda emitted: None,
        unsettled_dead_letter=lambda *a, **k: None,
    )
    return group


def test_check_refuses_what_a_redis_output_cannot_take_and_is_free_without_one(run_id_queue):
    from core.run.exits import LocalExits
    from core.transport.local import LocalQueue

    queue, out = run_id_queue
    local = LocalQueue("Local", 10)
    for exits in (
        LocalExits(exits_over(LocalQueue("In", 10), [local, out])),
        RedisExits(exits_over(queue, [local, out])),
    ):
        with pytest.raises(ItemError, match="cannot be written to a Redis queue"):
            exits.check([1, {2}])
        exits.check([1, [2], {"a": 3}])
    for exits in (LocalExits(exits_over(LocalQueue("In", 10), [local])), RedisExits(exits_over(queue, [local]))):
        exits.check([{2}, object()])  # local queues take any object: nothing to check
    assert local.qsize() == 0 and queue.redis.xlen(out.key) == 0


def test_what_check_wrote_is_sent_as_it_was_checked_and_what_it_keeps_is_bounded(run_id_queue):
    """emit() reuses the JSON check() wrote (an output is written once, not twice), as it was when checked;
    what was checked and never sent (its item failed) is pushed out by what comes after."""
    from core.transport.redis.encoding import Encoder

    queue, out = run_id_queue
    exits = RedisExits(exits_over(queue, [out]))
    record = {"n": 1}
    exits.check([record])
    record["n"] = 2  # changed after it was yielded and checked
    assert out.encoder.encode([record]) == ['{"n":1}']
    assert out.encoder.encode([record]) == ['{"n":2}']  # sent once: no longer remembered
    for i in range(5000):
        exits.check([{"i": i, "pad": "p" * 2000}])
    assert len(out.encoder._checked) <= Encoder.REMEMBER_OUTPUTS  # noqa: SLF001
    assert out.encoder._chars <= Encoder.REMEMBER_CHARS  # noqa: SLF001


@pytest.fixture
def run_id_queue() -> Iterator[tuple[RedisQueue, RedisQueue]]:
    import os

    run = RedisRun(os.environ["REDIS_URL"], "items-test", f"test-{uuid.uuid4().hex[:8]}")
    queue, out = RedisQueue("In", 100, run, reader="G"), RedisQueue("Out", 100, run, reader="Next")
    queue.stream.create(), out.stream.create()
    yield queue, out
    queue.fetcher.shutdown()
    run.redis.close()


# --- 6 and 22. an entry that cannot be read ---------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "entry",
    ['{"$type": "decimal", "value": "abc"}', '{"$type": "tuple", "value": 5}', DEEP],
    ids=["decimal-abc", "tuple-5", "100000-deep"],
)
def test_an_entry_that_cannot_be_decoded_is_dead_lettered_and_the_run_goes_on(tmp_path, key, entry):
    executor = start(
        tmp_path,
        f"""
        queues:
          - {{name: Numbers, backend: redis}}
        workers:
          - {{name: Source, location: fixture_workers, class: Source, input_values: {list(range(100))},
             output_queues: [Numbers], params: {{gate: {key}}}}}
          - {{name: Sink, location: fixture_workers, class: Collect, input_queue: Numbers, params: {{key: {key}}}}}
        """,
    )
    stream = executor.distributed.run.key("q", "Numbers")
    with client_of(executor) as client:
        wait_until(lambda: client.exists(stream), "the stream made")
        client.xadd(stream, {"d": entry, "n": 0})  # someone else's entry, read before the source's items
    fixture_workers.gate(key).set()
    report = finish(executor)

    assert sorted(fixture_workers.collected(key)) == list(range(100))
    (letter,) = letters(tmp_path)
    assert letter["group"] == "Sink" and letter["kind"] == "failed" and letter["item"] == entry
    assert "cannot be decoded" in letter["error"] and "not run" in letter["error"], letter["error"][:300]
    assert report.finish_reason == "finished" and report.lost == 0, (report.finish_reason, report.error)
    assert executor.run_report["ledger"]["Numbers"]["left"] == 0


# --- 22. the run's keys vanish ----------------------------------------------------------------------


@pytest.mark.parametrize("slow", ["sink", "source"])
def test_what_vanishes_with_the_runs_keys_is_counted(tmp_path, key, monkeypatch, slow):
    """FLUSHALL while one stage is slow: the run stops loudly, and what went with the keys is counted: the
    entries put here and never read (in a run of its own no other process could have) as lost, not 0; the
    source's input values never read, by name, as not started."""
    source, sink = ("Slow", "Collect") if slow == "source" else ("Source", "SlowCollect")
    with RedisServer(appendonly=False) as server:
        monkeypatch.setenv("REDIS_URL", server.url())
        executor = start(
            tmp_path,
            f"""
            queues:
              - {{name: Numbers, backend: redis}}
            workers:
              - {{name: Source, location: fixture_workers, class: {source}, input_values: {list(range(100))},
                 output_queues: [Numbers], {"params: {delay_s: 0.02}" if slow == "source" else ""}}}
              - {{name: Sink, location: {"fixture_workers" if slow == "source" else "redis_fixture_workers"},
                 class: {sink}, input_queue: Numbers, params: {{key: {key}{", delay_s: 0.02" if slow == "sink" else ""}}}}}
            """,
        )
        wait_until(lambda: len(fixture_workers.collected(key)) >= 10, "10 items stored")
        with server.client() as client:
            client.flushall()
        report = finish(executor)

    stored = fixture_workers.collected(key)
    dead = [letter["item"] for letter in letters(tmp_path)]
    assert report.finish_reason == "failed" and "no longer has run" in report.error, report.error
    assert len(set(stored)) == len(stored) and not set(stored) & set(dead), "stored twice, or stored and dead"
    assert len(set(dead)) == len(dead), "dead-lettered twice"
    assert report.lost == 100 - len(stored) - len(dead), (report.lost, len(stored), len(dead))
    assert report.exit_code == 1
    if slow == "sink":
        assert report.lost > 0  # the source had put them all: most were still in Numbers
    else:
        not_started = [letter for letter in letters(tmp_path) if letter["kind"] == "not-started"]
        assert len(not_started) > 50 and report.not_started == len(not_started), len(not_started)


# --- 23. an item the server refuses for its size ---------------------------------------------------


@pytest.mark.parametrize("numbers", ["local", "redis"])
def test_an_item_too_large_for_the_server_is_that_items_error(tmp_path, key, monkeypatch, numbers):
    """The server takes values up to 1 MiB (proto-max-bulk-len 1mb); item 4 becomes 8 MiB. It used to be sent
    again and again for the whole retry budget (the server closes the connection while it is written), and
    then the run failed with every item unsettled."""
    with RedisServer(appendonly=False, config={"proto-max-bulk-len": "1mb"}) as server:
        monkeypatch.setenv("REDIS_URL", server.url())
        monkeypatch.setenv("REDIS_RETRY_BUDGET_S", "3")
        started = time.monotonic()
        executor = start(
            tmp_path,
            f"""
            queues:
              - {{name: Numbers, backend: {numbers}}}
              - {{name: Out, backend: redis}}
            workers:
              - {{name: Source, location: fixture_workers, class: Source, input_values: {list(range(10))},
                 output_queues: [Numbers]}}
              - {{name: Stage, location: redis_fixture_workers, class: BigFor, input_queue: Numbers,
                 output_queues: [Out], params: {{big: 4, size_bytes: 8388608}}}}
              - {{name: Sink, location: fixture_workers, class: Collect, input_queue: Out, params: {{key: {key}}}}}
            """,
        )
        report = finish(executor)
        seconds = time.monotonic() - started

    assert sorted(fixture_workers.collected(key)) == [n for n in range(10) if n != 4]
    (letter,) = letters(tmp_path)
    assert letter["group"] == "Stage" and letter["kind"] == "failed" and letter["item"] == 4, letter
    assert "more than the server takes (proto-max-bulk-len 1048576)" in letter["error"], letter["error"]
    assert report.finish_reason == "finished" and report.lost == 0, (report.finish_reason, report.error)
    assert seconds < 15, f"took {seconds:.1f}s"


# --- 9. a generator's outputs for Redis ------------------------------------------------------------

FAN = 3000  # outputs of the one item, ~1 KiB each: about 3 MiB, staged in Redis past STAGE_AFTER_CHARS


def fan_pipeline(key: str, **params: Any) -> str:
    return f"""
        queues:
          - {{name: Numbers, backend: redis}}
          - {{name: Out, backend: redis}}
        workers:
          - {{name: Source, location: fixture_workers, class: Source, input_values: [7], output_queues: [Numbers]}}
          - {{name: Fan, location: redis_fixture_workers, class: Fan, input_queue: Numbers, output_queues: [Out],
             params: {json.dumps({"count": FAN, "filler_chars": 1000, "gate": key, **params})}}}
          - {{name: Sink, location: fixture_workers, class: Collect, input_queue: Out, params: {{key: {key}}}}}
        """


def staged_lists(executor: YamlPipelineExecutor, client: redis.Redis) -> dict[str, int]:
    return {
        name.decode(): client.llen(name) for name in client.scan_iter(match=executor.distributed.run.key("stage", "*"))
    }


def test_a_generators_outputs_wait_in_redis_not_in_memory_and_go_on_in_one_step(tmp_path, key, monkeypatch):
    """The loop sends a generator's outputs once it has finished (core/run/spool.py), in parts past its memory;
    RedisExits stages those parts in Redis, and the final settle moves them on with the acknowledgement. Looked
    at as the final part arrives: most outputs wait in Redis, this process holds less than the bound, and none
    has reached the next queue."""
    seen: dict[str, Any] = {}
    emit = RedisExits.emit

    def watching(self, delivery, outputs, *, final=True):
        if final and self.group.name == "Fan" and not seen:
            run = self.input.run
            seen["staged"] = sum(run.redis.llen(name) for name in run.redis.scan_iter(match=run.key("stage", "*")))
            seen["held"] = [parts.chars for parts in self._parts.values()]  # noqa: SLF001 - what it holds
            seen["out"] = run.redis.xlen(run.key("q", "Out"))
        return emit(self, delivery, outputs, final=final)

    monkeypatch.setattr(RedisExits, "emit", watching)
    executor = start(tmp_path, fan_pipeline(key))
    with client_of(executor) as client:
        report = finish(executor)
        left = staged_lists(executor, client)

    assert seen["staged"] >= 2000, seen  # most of the 3000 wait in Redis...
    assert seen["held"] and max(seen["held"]) < STAGE_AFTER_CHARS, seen  # ...what this process holds is bounded
    assert seen["out"] == 0  # nothing reached the next queue before the item was settled
    got = fixture_workers.collected(key)
    assert [(item, i) for item, i, _ in got] == [(7, i) for i in range(FAN)]  # all, once, in order
    assert not left, left
    assert report.finish_reason == "finished" and report.lost == 0 and not letters(tmp_path)
    assert executor.run_report["ledger"]["Out"]["added"] == FAN


def test_a_generator_that_fails_after_2500_outputs_sends_nothing_on(tmp_path, key):
    """Its outputs wait in the spool until it finishes (core/run/spool.py): it fails first, so none is staged or sent."""
    executor = start(tmp_path, fan_pipeline(key, fail_after=2500))
    report = finish(executor)
    with client_of(executor) as client:
        left = staged_lists(executor, client)

    assert fixture_workers.collected(key) == []
    (letter,) = letters(tmp_path)
    assert letter["group"] == "Fan" and letter["kind"] == "failed" and "failed after 2500" in letter["error"]
    assert not left, left  # nothing staged
    assert executor.run_report["ledger"]["Out"]["added"] == 0
    assert report.lost == 0


def test_a_claim_drops_what_the_stale_owner_staged_and_it_can_stage_no_more(run_id_queue):
    """Exactly once with staging: B claims A's entry (A stalled); what A staged is gone, A's next part and its
    settle are refused, and only B's outputs reach Out."""
    import os

    queue, out = run_id_queue
    queue.put_many(["in"])
    queue.visibility_timeout_s = 0.3
    queue.fetcher.start(readers=1, prefetch=1)
    taken = queue.get(WAIT_S)
    stale = RedisExits(exits_over(queue, [out]))
    part = ["a" * 1000] * (STAGE_AFTER_CHARS // 1000 + 1)
    stale.emit(taken, part, final=False)
    stage = queue.stream.stage_key(taken.token[0])
    assert queue.redis.llen(stage) == len(part)
    queue.freeze()  # A stalls: no lease renewed

    run_b = RedisRun(os.environ["REDIS_URL"], "items-test", queue.run.run_id)
    run_b.process_id = "machine-b"
    live = RedisQueue("In", 100, run_b, reader="G", visibility_timeout_s=0.3)
    try:
        live.fetcher.start(readers=1, prefetch=1)
        claimed = live.get(WAIT_S)
        assert claimed.token[0] == taken.token[0]
        assert not queue.redis.exists(stage), "the stale owner's staged outputs survived the claim"
        with pytest.raises(Returned):
            stale.emit(taken, part, final=False)
        assert not queue.redis.exists(stage)
        assert queue.settler.settle(taken, ["from A"], (out.key,)) is False
        assert live.settler.settle(claimed, ["from B"], (out.key,)) is True
        assert [fields[b"d"] for _, fields in queue.redis.xrange(out.key)] == [b'"from B"']
    finally:
        live.fetcher.shutdown()
        run_b.redis.close()


@pytest.mark.parametrize("size_bytes", [2 * 1024 * 1024, 8 * 1024 * 1024], ids=["answered", "connection-reset"])
def test_a_limit_lowered_after_the_start_still_makes_a_large_item_its_own_error(size_bytes):
    """The run read proto-max-bulk-len at its start (here: never, so it assumes Redis's default 512 MiB);
    the server takes 1 MiB. An output over it is refused by the server, with an answer (2 MiB) or by closing
    the connection while it is written (8 MiB): either way that item's error, found before a second try, and
    the small item settled beside it goes on."""
    import threading

    with RedisServer(appendonly=False, config={"proto-max-bulk-len": "1mb"}) as server:
        run = RedisRun(server.url(), "items-test", "lowered", retry_budget_s=30)
        source, out = RedisQueue("In", 100, run, reader="G"), RedisQueue("Out", 100, run, reader="Next")
        looking = redis.Redis.from_url(server.url(), socket_timeout=10)
        try:
            source.stream.create(), out.stream.create()
            started = time.monotonic()
            source.put_many(["big", "small"])
            source.fetcher.start(readers=1, prefetch=4)
            big, small = source.get(WAIT_S), source.get(WAIT_S)
            answers: dict[str, Any] = {}
            both = threading.Event()

            def answer(name: str) -> Callable[[Any], None]:
                def deliver(ok: Any) -> None:
                    answers[name] = ok
                    if len(answers) == 2:
                        both.set()

                return deliver

            source.settler.settle(big, ["x" * size_bytes], (out.key,), on_result=answer("big"))
            source.settler.settle(small, ["fine"], (out.key,), on_result=answer("small"))
            assert both.wait(WAIT_S), answers
            seconds = time.monotonic() - started
            assert answers["small"] is True
            assert isinstance(answers["big"], ItemError) and "Redis" in str(answers["big"]), answers
            # Read with a client of the test's own: the run's pool may hold the connection the server just closed
            # (the run's own calls retry on that; a bare read by the test would not).
            assert [fields[b"d"] for _, fields in looking.xrange(out.key)] == [b'"fine"']
            assert seconds < 20, f"took {seconds:.1f}s"  # not the whole retry budget

            run.max_bulk_bytes = MAX_BULK_BYTES  # forgotten again: the same for a put
            started = time.monotonic()
            with pytest.raises(ItemError, match="Redis"):
                out.put_many(["x" * size_bytes])
            assert time.monotonic() - started < 20
            assert looking.xlen(out.key) == 1
        finally:
            source.fetcher.shutdown()
            run.redis.close()
            looking.close()
