"""Bounded queues between worker groups, and the one end-of-stream sentinel."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable


class _Done:
    """Type of DONE; compare with `is DONE`."""

    def __repr__(self) -> str:
        return "DONE"

    def __reduce__(self) -> str:
        # Unpickles as the module's DONE, so `is DONE` holds across processes too.
        return "DONE"


#: End of stream. The executor puts one DONE per consumer instance into a queue once every
#: instance of every group writing to that queue has ended; a consumer instance stops at the
#: first DONE it takes. A closed queue hands out DONE to every caller once it is empty.
DONE = _Done()


class Empty(Exception):
    """Raised by Channel.get when the timeout passed with nothing to take."""


class Channel:
    """A named bounded FIFO whose blocked put/get wake at once when it is closed.

    queue.Queue cannot be woken from outside (Queue.shutdown is Python 3.13+), so a stopping
    pipeline would have to poll; this one uses two conditions on one lock and close() notifies both.
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
        self._closed = False
        self._dones = 0  # DONE markers in _items, so qsize() need not scan
        #: Receives each item refused because the channel is closed (the executor dead-letters it).
        self.on_reject: Callable[[Any], None] = _drop_nothing
        self.put_count = 0
        self.get_count = 0
        self.high_water = 0

    @property
    def closed(self) -> bool:
        """True once close() was called: puts are refused, gets drain to DONE."""
        return self._closed

    def qsize(self) -> int:
        """Items waiting now, DONE markers excluded."""
        with self._lock:
            return len(self._items) - self._dones

    def pending(self) -> list[Any]:
        """A copy of the items waiting now, DONE markers excluded; nothing is taken or woken."""
        with self._lock:
            return [item for item in self._items if item is not DONE]

    def put(self, item: Any) -> bool:
        """Block while full; False (and the item handed to on_reject) if the channel is closed."""
        with self._not_full:
            while len(self._items) >= self.maxsize and not self._closed:
                self._not_full.wait()
            if not self._closed:
                self._items.append(item)
                self.put_count += 1
                if len(self._items) > self.high_water:
                    self.high_water = len(self._items)
                self._not_empty.notify()
                return True
        self.on_reject(item)
        return False

    def put_done(self, count: int) -> None:
        """Append `count` DONE markers; they never wait for room, so ending never blocks."""
        with self._lock:
            self._items.extend([DONE] * count)
            self._dones += count
            self._not_empty.notify_all()

    def get(self, timeout_s: float | None = None) -> Any:
        """Next item, or DONE once closed and empty; raise Empty after timeout_s of nothing."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._not_empty:
            while not self._items and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Empty
                self._not_empty.wait(remaining)
            if not self._items:
                return DONE
            item = self._items.popleft()
            if item is DONE:
                self._dones -= 1
            else:
                self.get_count += 1
            self._not_full.notify()
            return item

    def close(self) -> int:
        """Refuse further puts, wake every waiter, hand queued items to on_reject; return their count."""
        with self._lock:
            self._closed = True
            left = [item for item in self._items if item is not DONE]
            self._items.clear()
            self._dones = 0
            self._not_empty.notify_all()
            self._not_full.notify_all()
        for item in left:
            self.on_reject(item)
        return len(left)


def _drop_nothing(item: Any) -> None:
    raise RuntimeError(f"channel closed with no on_reject handler; item {item!r} would be lost")
