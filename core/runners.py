"""Where a group's instances run in this process: one thread each, or asyncio tasks on one event loop.

Both drive the same core.loop.Instance; they differ only in how they start it and hand it items.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from core.loop import Instance
from core.queues import DONE, Delivery, Empty, LocalQueue

logger = logging.getLogger(__name__)


class ThreadRunner:
    """Each instance in a thread of its own, named like the instance (`<group>-<index>`)."""

    mode = "threads"

    def __init__(self, instances: list[Instance], inbox: LocalQueue) -> None:
        self.instances = instances
        self.inbox = inbox
        self.size = self.readers = len(instances)  # instances; DONEs its input needs
        self.threads = [threading.Thread(target=instance.run, args=(inbox,), name=instance.name, daemon=True)
                        for instance in instances]

    def start(self) -> None:
        """Start every instance."""
        for thread in self.threads:
            thread.start()

    def alive(self) -> int:
        """How many instances are running."""
        return sum(1 for thread in self.threads if thread.is_alive())

    def join(self, timeout_s: float | None) -> bool:
        """Wait for every instance, `timeout_s` in all (None: as long as it takes); True when none is left running."""
        return _join_all(self.threads, timeout_s)

    def in_hand(self) -> list[Delivery]:
        """Nothing beyond what the instances hold."""
        return []

    def stop(self, close_input: bool) -> None:
        """The instances see the group's stop event (and their input queue closed) themselves."""

    def open_group(self) -> None:
        """Instance 0 opens the group."""
        self.instances[0].worker.open_group()


class AsyncRunner:
    """Every instance as an asyncio task on one event loop in a thread of its own (`<group>-loop`).

    A feeder thread takes items from the (blocking) input queue and hands each to a waiting task, never
    taking more than there are instances free, so at most `instances` items are in hand at once.
    """

    mode = "async"

    def __init__(self, instances: list[Instance], inbox: LocalQueue, *,
                 close_resources: Callable[[], Any], reject: Callable[[Delivery, str], None]) -> None:
        self.instances = instances
        self.inbox = inbox
        self.size = self.readers = len(instances)  # the feeder takes one DONE per task
        self._close_resources = close_resources
        self._reject = reject
        name = instances[0].name.rsplit("-", 1)[0] if instances else "async"
        self.thread = threading.Thread(target=self._run_loop, name=f"{name}-loop", daemon=True)
        self.feeder = threading.Thread(target=self._feed, name=f"{name}-feeder", daemon=True)
        self._slots = threading.Semaphore(len(instances))
        self._lock = threading.Lock()
        self._ended = False
        self._in_transit: dict[int, Delivery] = {}  # taken from the queue, not yet by a task
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: deque[Any] = deque()
        self._waiters: deque[asyncio.Future] = deque()
        self._loop_ready = threading.Event()
        for instance in instances:
            instance.on_release = self._slots.release

    def start(self) -> None:
        """Start the event loop, then the feeder once the loop can take its hand-offs."""
        self.thread.start()
        self._loop_ready.wait()
        self.feeder.start()

    def alive(self) -> int:
        """How many instances are running."""
        return sum(1 for instance in self.instances if not instance.finished) if self.thread.is_alive() else 0

    def join(self, timeout_s: float | None) -> bool:
        """Wait for the loop and the feeder, `timeout_s` in all (None: as long as it takes); True when both ended."""
        return _join_all([self.thread, self.feeder], timeout_s)

    def in_hand(self) -> list[Delivery]:
        """Items taken from the queue that no task has taken yet."""
        with self._lock:
            return list(self._in_transit.values())

    def stop(self, close_input: bool) -> None:
        """The tasks see the group's stop event (and their input queue closed) themselves."""

    def open_group(self) -> None:
        """Instance 0 opens the group."""
        self.instances[0].worker.open_group()

    # --- the event loop's thread ---------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_ready.set()
        try:
            await asyncio.gather(*(instance.arun(self._take) for instance in self.instances))
        finally:
            with self._lock:
                self._ended = True
            await asyncio.sleep(0)  # hand-offs scheduled before the end run now, so none is left behind
            for _ in self.instances:
                self._slots.release()  # a feeder waiting for a free instance goes on, and ends
            while self._ready:
                self._left_over(self._ready.popleft())
            await self._close_resources()

    async def _take(self, timeout_s: float) -> Delivery | Any:
        if self._ready:
            return self._taken(self._ready.popleft())
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        timer = self._loop.call_later(timeout_s, _time_out, waiter)
        try:
            return self._taken(await waiter)
        except Empty:
            self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()

    def _taken(self, delivery: Delivery | Any) -> Delivery | Any:
        with self._lock:
            self._in_transit.pop(id(delivery), None)
        return delivery

    def _arrive(self, delivery: Delivery | Any) -> None:
        """In the loop: give the delivery to the first task waiting, else keep it for the next take."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(delivery)
                return
        self._ready.append(delivery)

    def _left_over(self, delivery: Delivery | Any) -> None:
        if delivery is not DONE:
            self._taken(delivery)
            self._reject(delivery, "crashed: every instance of the group had ended")

    # --- the feeder's thread -----------------------------------------------------------------------------

    def _feed(self) -> None:
        dones = 0
        while dones < len(self.instances):
            if not self._ended:
                self._slots.acquire()  # an instance is free for one more item
            delivery = self.inbox.get()
            if delivery is DONE:
                dones += 1
            with self._lock:
                if not self._ended:
                    if delivery is not DONE:
                        self._in_transit[id(delivery)] = delivery
                    self._loop.call_soon_threadsafe(self._arrive, delivery)
                    continue
            if delivery is DONE:
                return
            self._reject(delivery, "crashed: every instance of the group had ended")


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(Empty())


def _join_all(threads: list[threading.Thread], timeout_s: float | None) -> bool:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for thread in threads:
        if thread.ident is not None:  # never started (the run could not start): nothing to wait for
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
    return not any(thread.is_alive() for thread in threads)
