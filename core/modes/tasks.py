"""Every instance of a group as an asyncio task on one event loop (core/modes/threads.py runs them in threads).

Its own module, so that a run with no asyncio group never loads asyncio (18 ms of start-up).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from core.modes.threads import join_all
from core.run.loop import Instance
from core.transport.base import Delivery, Empty, Hold


class AsyncRunner:
    """Every instance as an asyncio task on one event loop in a thread of its own (`<group>-loop`).

    The tasks read the input queue themselves: an item waiting is taken at once, without leaving the loop;
    a task that finds the queue empty leaves a future with it, which the next put (from any thread) wakes.
    So each item is in one place only, the queue or a task, and no thread stands between them.
    """

    mode = "async"

    def __init__(self, instances: list[Instance], inbox: Any, *, close_resources: Callable[[], Any]) -> None:
        self.instances = instances
        self.inbox = inbox
        self.size = self.readers = len(instances)  # each task takes one DONE
        self._close_resources = close_resources
        name = instances[0].name.rsplit("-", 1)[0] if instances else "async"
        self.thread = threading.Thread(target=self._run_loop, name=f"{name}-loop", daemon=True)

    def start(self) -> None:
        """Start the event loop and its tasks."""
        self.thread.start()

    def alive(self) -> int:
        """How many instances are running."""
        return sum(1 for instance in self.instances if not instance.finished) if self.thread.is_alive() else 0

    def join(self, timeout_s: float | None) -> bool:
        """Wait for the loop, `timeout_s` at most (None: as long as it takes); True when it has ended."""
        return join_all([self.thread], timeout_s)

    def in_hand(self) -> list[Delivery]:
        """Nothing beyond what the instances hold."""
        return []

    def stop(self, close_input: bool) -> None:
        """The tasks see the group's stop event (and their input queue closed) themselves."""

    def open_group(self) -> None:
        """Instance 0 opens the group."""
        self.instances[0].worker.open_group()

    def _run_loop(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            await asyncio.gather(*(instance.arun(self._take) for instance in self.instances))
        finally:
            await self._close_resources()

    async def _take(self, timeout_s: float, hold: Hold) -> Delivery | Any:
        """The next delivery (or DONE), given to `hold` as it leaves the queue; Empty after timeout_s of nothing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            got = self.inbox.get_or_wait(loop, hold)
            if not isinstance(got, asyncio.Future):
                return got
            timer = loop.call_at(deadline, _time_out, got)
            try:
                await got  # woken by a put, a DONE, a close; or timed out
            except Empty:
                self.inbox.forget_waiter(got)
                raise
            finally:
                timer.cancel()


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(Empty())
