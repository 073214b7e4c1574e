"""Groups whose worker's process is `async def`: `instances` asyncio tasks on one event loop, with the same
guarantees as threads: DONE to every task, failures dead-lettered, crashes and stops accounted, a full
output queue waited for without blocking the loop."""

from __future__ import annotations

import threading

import fixture_workers
import pytest
from test_executor import assert_accounted, dead_letters, finish, groups, key, mode, pipeline, run, source, stage, start  # noqa: F401

pytestmark = pytest.mark.parametrize("mode", ["threads"])  # the async stage runs in this process


def test_every_task_gets_done_and_every_item_passes(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Doubled": 5},
            source("Source", range(200), "Numbers"),
            stage("Double", "AsyncDouble", "Numbers", ["Doubled"], instances=16, delay_s=0.001),
            stage("Sink", "Collect", "Doubled", key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == [2 * n for n in range(200)]
    assert executor.groups["Double"].mode == "async" and groups(report)["Double"].mode == "async"
    assert all(instance.finished for instance in executor.groups["Double"].instances)
    assert report.exit_code == 0
    assert_accounted(report)


def test_many_waits_overlap_on_one_loop(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 100, "Passed": 100},
            source("Source", range(100), "Numbers"),
            stage("Wait", "AsyncGauge", "Numbers", ["Passed"], instances=50, delay_s=0.3, key=key),
            stage("Sink", "Collect", "Passed", key=key),
        ),
    )

    # 50 tasks each holding an item 0.3 s: all 50 were waiting at the same moment, on one event loop.
    assert fixture_workers.peak_in_flight(key) == 50
    assert len(fixture_workers.collected(key)) == 100
    assert_accounted(report)


def test_failures_in_async_items_are_dead_lettered(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Even": 5},
            source("Source", range(20), "Numbers"),
            stage("EvenOnly", "AsyncFailOdd", "Numbers", ["Even"], instances=4),
            stage("Sink", "Collect", "Even", key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == list(range(0, 20, 2))
    assert sorted(r["item"] for r in dead_letters(tmp_path)) == list(range(1, 20, 2))
    assert report.exit_code == 1
    assert_accounted(report)


def test_an_async_generator_gives_many_outputs(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Many": 5},
            source("Source", [1, 2, 3], "Numbers"),
            stage("Many", "AsyncYield", "Numbers", ["Many"], instances=2),
            stage("Sink", "Collect", "Many", key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == [1, 2, 2, 3, 3, 3]
    assert_accounted(report)


def test_async_tasks_crashing_in_setup_lose_nothing(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 2, "After": 2},
            source("Source", range(20), "Numbers"),
            stage("Broken", "AsyncCrashInSetup", "Numbers", ["After"], instances=3),
            stage("Sink", "Collect", "After", key=key),
        ),
    )

    assert groups(report)["Broken"].crashed == 3
    assert sorted(r["item"] for r in dead_letters(tmp_path)) == list(range(20))
    assert report.exit_code == 1
    assert_accounted(report)


def test_a_full_output_queue_is_waited_for_off_the_loop(tmp_path, key):
    # The sink takes 20 ms an item behind a queue of 1: the tasks wait for room, yet the loop stays free,
    # so their other awaits go on; everything arrives.
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 50, "Doubled": 1, "Slowed": 50},
            source("Source", range(50), "Numbers"),
            stage("Double", "AsyncDouble", "Numbers", ["Doubled"], instances=8),
            stage("Slow", "Slow", "Doubled", ["Slowed"], delay_s=0.02),
            stage("Sink", "Collect", "Slowed", key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == [2 * n for n in range(50)]
    assert groups(report)["Double"].emitted == 50
    assert_accounted(report)


def test_stopping_an_async_stage_accounts_for_every_item(tmp_path, key):
    executor = start(
        tmp_path,
        pipeline(
            {"Numbers": 20, "Doubled": 20},
            source("Source", range(500), "Numbers"),
            stage("Double", "AsyncDouble", "Numbers", ["Doubled"], instances=8, delay_s=0.05),
            stage("Sink", "Collect", "Doubled", key=key),
        ),
    )
    assert len(fixture_workers.wait_collected(key, 10)) >= 10

    executor.request_stop(15)
    report = finish(executor)

    assert report.finish_reason == "interrupted"
    stored = fixture_workers.collected(key)
    assert sorted([n // 2 for n in stored] + [r["item"] for r in dead_letters(tmp_path)]) == list(range(500))
    assert_accounted(report)
    assert not [t for t in threading.enumerate() if t.name.startswith("Double-")]
