"""A sink's own buffer and a forced exit (issue 16, item 16): a sink that buffers what process() gives it
defines flush(); the loop calls it (every `flush_every` items, when idle, before teardown) and an item counts as
done only once a flush() after it has returned. A second Ctrl-C therefore costs nothing silently: the items a
sink took and had not written out are dead-lettered as `abandoned` (over a Redis queue they stay pending there,
for the run's next process to claim), and a replay of the dead letters stores every one of them.

Run over threads, worker processes and a Redis queue, through `python main.py`; every input item is checked
against what the sink wrote and the dead letters (and, over Redis, the entries still pending).
"""

from __future__ import annotations

import collections
import json
import os
import signal

import fixture_workers
import pytest
import redis
import test_executor
from test_executor import assert_accounted, dead_letters, groups, key, mode, run  # noqa: F401 - fixtures
from test_processes import Run, no_process_left

from conftest import TEST_REDIS_URL

ITEMS = 2000
MODES = ["threads", "processes", "redis"]


def pipeline(key: str, mode: str, *, items: int = ITEMS, delay_s: float = 0.01) -> str:
    values = list(range(items))
    return (
        "queues:\n  - name: Numbers\n    maxsize: 5000\n"
        + ("    backend: redis\n" if mode == "redis" else "")
        + "workers:\n"
        f"  - name: Source\n    location: fixture_workers\n    class: Source\n    input_values: {values}\n"
        "    output_queues: [Numbers]\n"
        "  - name: Sink\n    location: fixture_workers\n    class: BufferedSink\n    input_queue: Numbers\n"
        "    instances: 2\n"
        + ("    processes: 2\n" if mode == "processes" else "")
        + f"    params:\n      key: {key}\n      flush_every: 150\n      delay_s: {delay_s}\n"
    )


def pending_in_redis(prefix: str, queue: str) -> list:
    """The items of the entries still in a Redis queue's stream (settled entries are deleted)."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        items = []
        for key in client.scan_iter(match=f"{prefix}:*:q:{queue}"):
            for _, fields in client.xrange(key):
                items += [json.loads(value) for value in fields.values()]
        return items
    finally:
        client.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_forced_exit_dead_letters_what_a_sink_buffered_and_a_replay_stores_it(tmp_path, mode, redis_keys_of_the_test):
    key = str(tmp_path / "sink")
    with Run(tmp_path, pipeline(key, mode), "--shutdown-timeout", "30") as run:
        # A quarter taken by the sink (flushed every 150): a forced exit now finds items in a buffer.
        seen = fixture_workers.wait_collected(f"{key}-seen", ITEMS // 4, timeout_s=60)
        assert len(seen) >= ITEMS // 4, run.log()[-3000:]
        os.killpg(run.proc.pid, signal.SIGINT)
        run.wait_log("stop requested by signal 2")
        os.killpg(run.proc.pid, signal.SIGINT)
        code = run.wait(30)
    no_process_left(run)

    assert code == 130, run.log()[-3000:]
    written = fixture_workers.collected(key)
    letters = run.letters
    pending = pending_in_redis(redis_keys_of_the_test, "Numbers") if mode == "redis" else []
    twice = [item for item, n in collections.Counter(letter["item"] for letter in letters).items() if n > 1]
    assert not twice
    missing = set(range(ITEMS)) - set(written) - {letter["item"] for letter in letters} - set(pending)
    assert not missing, (sorted(missing)[:20], len(missing), run.log()[-3000:])
    stats = run.stats
    assert stats["dead_letters"] == len(letters) and stats["lost"] == 0, stats
    sink = stats["groups"]["Sink"]
    assert sink["received"] == sink["processed"] + sink["dead_lettered"] + sink.get("returned", 0), sink
    assert sink["processed"] <= len(set(written)), sink  # done means written out, never more
    if mode == "redis":
        return  # what the sink had in hand is pending in Redis, for the run's next process (not a replay's)
    assert any(letter["kind"] == "abandoned" and letter["group"] == "Sink" for letter in letters)

    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    dead = tmp_path / "dl.jsonl"
    with Run(replay_dir, pipeline(key, mode, delay_s=0), "--replay", str(dead)) as again:
        assert again.wait(60) == 0, again.log()[-3000:]
    no_process_left(again)
    assert set(fixture_workers.collected(key)) == set(range(ITEMS))


# --- flush() inside a run, over threads, worker processes and Redis, sync and async ---------------------------


@pytest.mark.parametrize("sink", ["BufferedSink", "AsyncBufferedSink"])
def test_a_flushing_sink_stores_every_item_and_counts_it_done_once_flushed(tmp_path, key, mode, sink):
    executor, report = run(
        tmp_path,
        test_executor.pipeline(
            {"Numbers": 20},
            test_executor.source("Source", range(500), "Numbers"),
            test_executor.stage("Sink", sink, "Numbers", instances=3, key=key, flush_every=7),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == list(range(500))
    sink_report = groups(report)["Sink"]
    assert (sink_report.processed, sink_report.stored, sink_report.dead_lettered) == (500, 500, 0)
    assert report.exit_code == 0
    assert_accounted(report)


@pytest.mark.parametrize("sink", ["BufferedSink", "AsyncBufferedSink"])
def test_a_failing_flush_dead_letters_the_items_it_covered_and_the_run_goes_on(tmp_path, key, mode, sink):
    executor, report = run(
        tmp_path,
        test_executor.pipeline(
            {"Numbers": 20},
            test_executor.source("Source", range(200), "Numbers"),
            test_executor.stage("Sink", sink, "Numbers", instances=2, key=key, flush_every=10, fail_flush=2),
        ),
    )

    written = fixture_workers.collected(key)
    letters = dead_letters(tmp_path)
    assert letters and all(
        letter["kind"] == "failed" and "flush() failed: OSError: " in letter["error"] and letter["group"] == "Sink"
        for letter in letters
    ), letters[:3]
    assert sorted(written + [letter["item"] for letter in letters]) == list(range(200))  # each once, none lost
    sink_report = groups(report)["Sink"]
    assert (sink_report.stored, sink_report.dead_lettered) == (len(written), len(letters))
    assert report.exit_code == 1
    assert_accounted(report)
