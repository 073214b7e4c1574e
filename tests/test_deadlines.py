"""Deadlines for many tasks kept by one timer (core/http/deadlines.py), as the asyncio HTTP client uses them for
every try in flight: each block ends by its deadline with TimeoutError, a moved deadline counts from then on,
a cancellation from outside stays a cancellation, and the loop holds one timer however many blocks run.

These need Python 3.11 (the README says 3.11+): telling a cancellation from outside from the block's own
deadline takes Task.cancelling() and Task.uncancel(). On 3.10 core/http/deadlines.py falls back to treating every
cancellation of an expired block as its timeout, and a stop's cancel arriving as the deadline passes becomes
a TimeoutError (test_a_cancellation_from_outside_stays_a_cancellation fails there)."""

from __future__ import annotations

import asyncio

import pytest

from core.http.deadlines import Deadlines

SLACK_S = 0.25  # how late a deadline may be seen on a loaded machine


async def sleep_in_block(deadlines: Deadlines, seconds: float, until: float) -> str:
    with deadlines.until(until):
        await asyncio.sleep(seconds)
    return "done"


def test_a_block_past_its_deadline_raises_timeout_error_on_time():
    async def main() -> float:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        started = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await sleep_in_block(deadlines, 30, started + 0.2)
        return loop.time() - started

    took = asyncio.run(asyncio.wait_for(main(), 10))
    assert 0.2 <= took < 0.2 + SLACK_S


def test_only_the_blocks_past_their_deadline_end_and_the_loop_holds_one_timer():
    async def main() -> tuple[list, int]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        now = loop.time()
        before = sum(1 for handle in loop._scheduled if not handle.cancelled())  # noqa: SLF001 (wait_for's)
        tasks = [
            asyncio.ensure_future(sleep_in_block(deadlines, 0.3, now + (0.1 if n % 2 else 30))) for n in range(200)
        ]
        await asyncio.sleep(0)  # every block entered
        timers = sum(1 for handle in loop._scheduled if not handle.cancelled()) - before  # noqa: SLF001
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return results, timers

    results, timers = asyncio.run(asyncio.wait_for(main(), 10))
    assert timers == 201  # the 200 sleeps and the one deadline timer
    assert [type(r) for r in results[1::2]] == [asyncio.TimeoutError] * 100
    assert results[0::2] == ["done"] * 100


def test_a_moved_deadline_counts_from_then_on():
    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        started = loop.time()
        with deadlines.until(started + 0.1) as deadline:
            deadline.move(started + 30)  # later: the first deadline no longer applies
            await asyncio.sleep(0.3)
        later = loop.time()
        try:
            with deadlines.until(later + 30) as deadline:
                deadline.move(later + 0.2)  # earlier
                await asyncio.sleep(30)
        except TimeoutError:
            return "timed out", loop.time() - later
        return "not timed out", 0.0

    outcome, took = asyncio.run(asyncio.wait_for(main(), 10))
    assert outcome == "timed out" and 0.2 <= took < 0.2 + SLACK_S


def test_a_cancellation_from_outside_stays_a_cancellation():
    async def main() -> None:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(sleep_in_block(deadlines, 30, loop.time() + 30))
        await asyncio.sleep(0)  # one turn of the loop: the task runs into its block and waits there
        assert task in deadlines.guarded
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # cancelled from outside as its deadline passes: still a cancellation
        task = asyncio.ensure_future(sleep_in_block(deadlines, 30, loop.time() + 0.1))
        loop.call_at(loop.time() + 0.1, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not deadlines.guarded

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_timed_out_block_leaves_the_task_as_it_was():
    async def main() -> int:
        deadlines = Deadlines()
        with pytest.raises(asyncio.TimeoutError):
            await sleep_in_block(deadlines, 30, asyncio.get_running_loop().time() + 0.05)
        # an asyncio.timeout() after it still works: no cancel request of ours is left on the task
        async with asyncio.timeout(5):
            await asyncio.sleep(0.01)
        return asyncio.current_task().cancelling()

    assert asyncio.run(asyncio.wait_for(main(), 10)) == 0
