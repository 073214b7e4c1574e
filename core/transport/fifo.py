"""The store under the in-process queue (core/transport/local.py): its items and DONE markers, its ledger, who
waits for items, and every call on it that never waits: what an event loop may call (get_or_wait, put_some),
closing and freezing. LocalQueue adds the calls that park a thread until there is room or an item.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from core.transport.base import DONE, Delivery, Hold, notify, notify_all

logger = logging.getLogger(__name__)


class Fifo:
    """A named bounded FIFO under one lock, with its DONE markers, ledger and waiters; nothing here waits.

    Two conditions on the one lock wake blocked writers (`_not_full`) and readers (`_not_empty`), which
    core.transport.local.LocalQueue parks in; close() notifies both, so a stopping pipeline need not poll.
    """

    def __init__(self, name: str, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.maxsize = maxsize
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        #: True once close() was called: puts are refused, gets drain to DONE.
        self.closed = False
        self._frozen = False
        self._rejecting = 0  # close() calls handing refused items to on_reject: readers wait for the end
        self._async_waiters: deque[tuple[Any, Any]] = deque()  # (event loop, future) of tasks waiting for items
        self._dones = 0  # DONE markers in _items, so qsize() need not scan
        #: A producer waiting for room is woken once a quarter of the queue is free, not at every free slot:
        #: one faster than its readers would otherwise be woken (and take the GIL) for every item they take,
        #: and readers still have three quarters of the queue to work on meanwhile.
        self._refill_at = max(maxsize // 4, 1)
        self._eager = 0  # readers waiting in get() or get_items() for one item
        self._patient: list[int] = []  # the wake_at of each reader waiting in get() for more than one item
        self._wake_min = 1  # wake waiting readers once this many items are queued: one of them when none is
        #                     patient, else every one (they wait for different amounts; each checks its own)
        #: Receives each item refused because the queue is closed (its reader group dead-letters it).
        self.on_reject: Callable[[Any], None] = _drop_nothing
        #: The queue's ledger. put: items producers put in (so put + refused is what its producers emitted);
        #: preloaded: items the runner put in itself, beyond maxsize (a replay's, a source's input values);
        #: refused: items offered once it was closed, handed to on_reject (its reader group dead-letters them);
        #: taken: items its readers took, and those a close or freeze took out for them (minus any given back).
        #: So put + preloaded == taken + qsize(), and its reader received taken + refused.
        self.put_count = 0
        self.preloaded = 0
        self.refused = 0
        self.get_count = 0
        self.high_water = 0  # the most items waiting at once: above maxsize only by what was preloaded

    def qsize(self) -> int:
        """Items waiting now, DONE markers excluded."""
        with self._lock:
            return len(self._items) - self._dones

    def put_nowait(self, item: Any) -> bool | None:
        """Like put() but never waits: None when the queue is full (nothing done)."""
        with self._lock:
            if not self.closed:
                if len(self._items) >= self.maxsize or self._frozen:
                    return None
                self._append(item)
                return True
            self.refused += 1
        self.on_reject(item)
        return False

    def put_some(self, items: list[Any]) -> int:
        """Put as many of `items`, in order, as there is room for now, never waiting; return how many were
        dealt with (put, or handed to on_reject because the queue is closed). The rest is the caller's."""
        with self._lock:
            if not self.closed:
                room = 0 if self._frozen else max(self.maxsize - len(self._items), 0)
                for item in items[:room]:
                    self._append(item)
                return min(room, len(items))
            self.refused += len(items)
        for item in items:
            self.on_reject(item)
        return len(items)

    def preload(self, items: Iterable[Any]) -> int:
        """Append items beyond maxsize (a source's input values, a replay), counted as preloaded, not put;
        return how many went in (a closed queue hands them to on_reject instead)."""
        items = list(items)
        with self._lock:
            if not self.closed:
                self.preloaded += self._append_uncounted(items)
                return len(items)
            self.refused += len(items)
        for item in items:  # outside the lock, as in close()
            self.on_reject(item)
        return 0

    def give_back(self, deliveries: list[Delivery]) -> None:
        """Items taken and not started go back (a worker process ended before it took them): untaken again,
        not put a second time."""
        items = [delivery.item for delivery in deliveries]
        with self._lock:
            if not self.closed:
                self.get_count -= self._append_uncounted(items)
                return
            self.get_count -= len(items)
            self.refused += len(items)
        for item in items:
            self.on_reject(item)

    def put_done(self, count: int) -> None:
        """Append `count` DONE markers; they never wait for room, so ending never blocks."""
        with self._lock:
            self._items.extend([DONE] * count)
            self._dones += count
            self._not_empty.notify_all()
            self._wake_async(None)

    def get_or_wait(self, loop: Any, hold: Hold | None = None) -> Delivery | Any:
        """For an asyncio task, in its loop: the next delivery (or DONE) at once, or a future that the next
        put, put_done or close resolves (then ask again); forget_waiter() it if you stop waiting."""
        with self._lock:
            if self._items and not self._frozen:
                return self._take(hold)
            if self._ended():
                return DONE
            future = loop.create_future()
            self._async_waiters.append((loop, future))
            return future

    def forget_waiter(self, future: Any) -> None:
        """A task stopped waiting (its idle timeout). If a put had already woken it, the wake-up goes on to
        the next task waiting, so no item waits for a task that is asleep."""
        with self._lock:
            waiting = len(self._async_waiters)
            self._async_waiters = deque(waiter for waiter in self._async_waiters if waiter[1] is not future)
            if len(self._async_waiters) == waiting and self._items:
                self._wake_async(1)

    def ack(self, delivery: Delivery) -> None:
        """The delivery is settled; an in-process queue has nothing to do."""

    def close(self) -> int:
        """Refuse further puts, wake every waiter, hand queued items to on_reject; return their count.
        A frozen queue thaws: its waiters see it closed. If the handler raised, the first error is raised once
        every item was handed to it.

        The handler runs outside the lock (it records each item: a file, a group's books, perhaps this queue's
        size), each item on its own, so one it fails on cannot cost the others; no reader sees the queue ended
        until every item was handed over, so its group's count is whole when its readers end."""
        with self._lock:
            self.closed = True
            self._frozen = False
            left = [item for item in self._items if item is not DONE]
            self._items.clear()
            self._dones = 0
            self.get_count += len(left)  # taken out for the reader group, which dead-letters them
            self._rejecting += 1
            self._not_full.notify_all()  # producers see it closed: what they put is rejected
        failed: Exception | None = None
        try:
            for item in left:
                try:
                    self.on_reject(item)
                except Exception as exc:  # noqa: BLE001 - the others must still be recorded; raised below
                    logger.critical(
                        "%s: an item refused by the closed queue could not be recorded: %r",
                        self.name,
                        item,
                        exc_info=True,
                    )
                    failed = failed or exc
        finally:
            with self._lock:
                self._rejecting -= 1
                self._not_empty.notify_all()
                self._wake_async(None)
        if failed is not None:
            raise failed
        return len(left)

    def freeze(self) -> list[Any]:
        """For a forced exit: from now on nothing goes in or out (callers wait for good); take out and
        return what is queued, for the caller to record."""
        with self._lock:
            self._frozen = True
            left = [item for item in self._items if item is not DONE]
            self._items.clear()
            self._dones = 0
            self.get_count += len(left)
            return left

    def _ended(self) -> bool:
        """Under the lock: closed with nothing left to take, and every item it refused recorded."""
        return self.closed and not self._frozen and not self._items and not self._rejecting

    def _append_uncounted(self, items: list[Any]) -> int:
        """Under the lock: append `items` as _append does, without counting them as put; return how many."""
        for item in items:
            self._append(item)
        self.put_count -= len(items)
        return len(items)

    def _append(self, item: Any) -> None:
        self._items.append(item)
        self.put_count += 1
        if len(self._items) - self._dones > self.high_water:
            self.high_water = len(self._items) - self._dones
        if len(self._items) >= self._wake_min:
            if self._patient:
                self._not_empty.notify_all()
            else:
                notify(self._not_empty)
        if self._async_waiters:
            self._wake_async(1)

    def _wake_async(self, count: int | None) -> None:
        """Under the lock: wake `count` waiting tasks (None: all), each in its own event loop."""
        while self._async_waiters and (count is None or count > 0):
            loop, future = self._async_waiters.popleft()
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # its loop has closed: nobody waits there any more
                continue
            if count is not None:
                count -= 1

    def _take(self, hold: Hold | None = None) -> Delivery | Any:
        item = self._items.popleft()
        if self.maxsize - len(self._items) >= self._refill_at:
            notify_all(self._not_full)
        if item is DONE:
            self._dones -= 1
            return DONE
        self.get_count += 1
        delivery = Delivery(item)
        if hold is not None:
            hold(delivery)
        return delivery


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)


def _drop_nothing(item: Any) -> None:
    raise RuntimeError(f"queue closed with no on_reject handler; item {item!r} would be lost")
