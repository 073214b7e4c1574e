"""The in-process queue between worker groups (core/transport/base.py's interface): bounded, with DONE per reader,
closing that rejects what waits (to be dead-lettered), and asyncio waiters. Its store and the calls that never
wait are core/transport/fifo.py; here are the calls that park a thread until there is room or an item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.transport.base import DONE, Delivery, Empty, Hold
from core.transport.fifo import Fifo


class LocalQueue(Fifo):
    """The in-process transport: a named bounded FIFO whose blocked put/get wake at once on close.

    queue.Queue cannot be woken from outside (Queue.shutdown is Python 3.13+), so a stopping pipeline
    would have to poll; this one uses two conditions on one lock and close() notifies both.
    """

    def put(self, item: Any) -> bool:
        """Block while full; False (and the item handed to on_reject) if the queue is closed."""
        with self._not_full:
            while (len(self._items) >= self.maxsize or self._frozen) and not self.closed:
                self._not_full.wait()
            if not self.closed:
                self._append(item)
                return True
            self.refused += 1
        self.on_reject(item)
        return False

    def put_many(self, items: list[Any]) -> float:
        """put() each item in order, taking the lock once per run of room rather than once per item; return
        the seconds spent waiting for room."""
        start, waited = 0, 0.0
        while start < len(items):
            with self._not_full:
                if (len(self._items) >= self.maxsize or self._frozen) and not self.closed:
                    began = time.perf_counter()
                    while (len(self._items) >= self.maxsize or self._frozen) and not self.closed:
                        self._not_full.wait()
                    waited += time.perf_counter() - began
                if self.closed:
                    self.refused += len(items) - start
                    break
                room = self.maxsize - len(self._items)
                for item in items[start : start + room]:
                    self._append(item)
                start += room
        for item in items[start:]:
            self.on_reject(item)
        return waited

    def get(self, timeout_s: float | None = None, *, wake_at: int = 1, hold: Hold | None = None) -> Delivery | Any:
        """The next Delivery, or DONE once closed and empty; raise Empty after timeout_s of nothing.

        `hold`, if given, receives the Delivery under the queue's lock, before get() returns: the taker's
        books have it from the very moment it left the queue (so a forced exit, which freezes the queue
        first, finds every item either in the queue or in someone's hand, never in between).

        `wake_at`: a reader filling a batch may sleep until that many items are queued (its batch's room),
        so it is woken once per batch instead of once per item (each wake-up of a thread costs a context
        switch and the GIL). A DONE, a close or the timeout wake it sooner; it then takes what is there.
        Either way it takes one item per call.
        """
        # At most what leaves a producer waiting on a full queue its room once this reader has taken its
        # share (see _refill_at): else each would wait for the other until the reader's timeout.
        wake_at = min(max(wake_at, 1), self.maxsize - self._refill_at + 1)
        with self._not_empty:
            if self._ready(wake_at):
                return self._take(hold)
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            self._waiting(wake_at, +1)
            try:
                while not self._ready(wake_at):
                    if self._ended():
                        return DONE
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        if self._items and not self._frozen:
                            break  # fewer than wake_at came in time: take what is there
                        raise Empty
                    self._not_empty.wait(remaining)
            finally:
                self._waiting(wake_at, -1)
            return self._take(hold)

    def get_items(
        self, max_items: int, timeout_s: float | None = None, hold: Callable[[list[Any]], None] | None = None
    ) -> tuple[list[Any], bool]:
        """Wait like get() for the first, then take up to `max_items` without waiting: (items, True if a DONE
        came after them). Raise Empty after timeout_s of nothing. For a feeder that moves items on in bulk;
        `hold` receives the items under the lock, as get()'s does."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._not_empty:
            self._waiting(1, +1)
            try:
                while not self._items or self._frozen:
                    if self._ended():
                        return [], True
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise Empty
                    self._not_empty.wait(remaining)
            finally:
                self._waiting(1, -1)
            items: list[Any] = []
            queued = self._items
            while queued and len(items) < max_items:
                item = queued.popleft()
                if item is DONE:
                    self._dones -= 1
                    break
                items.append(item)
            else:
                item = None
            self.get_count += len(items)
            self._not_full.notify_all()
            if hold is not None and items:
                hold(items)
            return items, item is DONE

    def _ready(self, wake_at: int) -> bool:
        """Under the lock: whether a reader asking for `wake_at` items should take one now."""
        return (
            bool(self._items) and not self._frozen and (wake_at == 1 or len(self._items) >= wake_at or self._dones > 0)
        )

    def _waiting(self, wake_at: int, change: int) -> None:
        """Under the lock: a reader starts (+1) or stops (-1) waiting for `wake_at` items."""
        if change > 0:
            self._eager += wake_at == 1
            if wake_at > 1:
                self._patient.append(wake_at)
        else:
            self._eager -= wake_at == 1
            if wake_at > 1:
                self._patient.remove(wake_at)
        self._wake_min = 1 if self._eager or not self._patient else min(self._patient)
