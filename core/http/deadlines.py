"""Deadlines for many tasks on one event loop, kept by one timer.

`asyncio.timeout_at()` schedules a timer for each block it guards and another each time the deadline moves;
with hundreds of requests in flight the loop's timer heap holds hundreds of entries, each push compares
TimerHandles in Python, and the asyncio HTTP client paid 26 us of CPU per request for its two (measured:
a tenth of what a request costs). Here a block guarded is an entry in a dict. One timer is set for the
earliest deadline; when it fires it cancels every task whose deadline has passed and sets itself for the
next one. It is moved earlier only when a new or moved deadline comes before it, which with deadlines
seconds away and answers in milliseconds is rare. A task cancelled for its deadline sees TimeoutError, as
with `asyncio.timeout_at()`; any other cancellation goes through untouched.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal


class Deadline:
    """One guarded block: `with deadlines.until(when) as deadline:`; `deadline.move(when)` moves it."""

    __slots__ = ("keeper", "task", "when", "expired", "cancelling")

    def __init__(self, keeper: Deadlines, task: asyncio.Task, when: float) -> None:
        self.keeper = keeper
        self.task = task
        self.when = when
        self.expired = False
        self.cancelling = 0

    def move(self, when: float) -> None:
        """The block must now end by `when` (loop time), earlier or later than before."""
        self.when = when
        if when < self.keeper.next_check:
            self.keeper.check_at(when)

    def __enter__(self) -> Deadline:
        keeper = self.keeper
        if self.task in keeper.guarded:
            raise RuntimeError("a task can be in one Deadlines block at a time")
        cancelling = getattr(self.task, "cancelling", None)  # Python 3.11+
        self.cancelling = cancelling() if cancelling else 0
        keeper.guarded[self.task] = self
        if self.when < keeper.next_check:
            keeper.check_at(self.when)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        del self.keeper.guarded[self.task]
        if self.expired:
            uncancel = getattr(self.task, "uncancel", None)  # Python 3.11+: take back our cancel() request
            outside = uncancel() > self.cancelling if uncancel else False  # someone else cancelled it too
            if exc_type is asyncio.CancelledError and not outside:
                raise TimeoutError from exc
        return False


class Deadlines:
    """The deadlines of the blocks running on one event loop (make it in that loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.guarded: dict[asyncio.Task, Deadline] = {}
        self.next_check = float("inf")  # when the timer fires (inf: no timer)
        self._timer: asyncio.TimerHandle | None = None

    def until(self, when: float) -> Deadline:
        """A block of the current task that must end by `when` (loop time), as a context manager."""
        task = asyncio.current_task(self.loop)
        if task is None:
            raise RuntimeError("Deadlines.until() needs a running task")
        return Deadline(self, task, when)

    def check_at(self, when: float) -> None:
        """Set the timer for `when`."""
        if self._timer is not None:
            self._timer.cancel()
        self.next_check = when
        self._timer = self.loop.call_at(when, self._check)

    def _check(self) -> None:
        self._timer, self.next_check = None, float("inf")
        now = self.loop.time()
        earliest = float("inf")
        for deadline in list(self.guarded.values()):
            if deadline.expired:
                continue
            if deadline.when <= now:
                deadline.expired = True
                deadline.task.cancel()
            elif deadline.when < earliest:
                earliest = deadline.when
        if earliest != float("inf"):
            self.check_at(earliest)

    def close(self) -> None:
        """Cancel the timer (the blocks still guarded are left to their own ends)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self.next_check = None, float("inf")
