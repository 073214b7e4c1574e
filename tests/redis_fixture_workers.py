"""Tiny worker classes for the Redis transport's tests (`location: redis_fixture_workers`); sinks record through
fixture_workers (its `collected(key)` reads what they got)."""

from __future__ import annotations

import threading
import time
from typing import Any

import fixture_workers

from workers.base import Worker

#: A gate nobody opens lets its worker go after this long, so a failing test cannot hang the run.
GATE_TIMEOUT_S = 20.0

_gates: dict[str, threading.Event] = {}
_reached: dict[str, threading.Event] = {}
_lock = threading.Lock()


def gate(name: str) -> threading.Event:
    """The gate `name`: a worker waiting at it goes on once it is set."""
    with _lock:
        return _gates.setdefault(name, threading.Event())


def reached(name: str) -> threading.Event:
    """Set once a worker has come to the gate `name` (and waits there)."""
    with _lock:
        return _reached.setdefault(name, threading.Event())


def forget(name: str) -> None:
    with _lock:
        _gates.pop(name, None)
        _reached.pop(name, None)


class SetFor(Worker):
    """Passes each number on, but item `bad` becomes a set (which JSON cannot carry)."""

    def __init__(self, *, bad: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bad = bad

    def process(self, item: int) -> Any:
        return {item} if item == self.bad else item


class BigFor(Worker):
    """Passes each number on, but item `big` becomes a string of `size_bytes` (larger than the server takes)."""

    def __init__(self, *, big: int = 4, size_bytes: int = 2 * 1024 * 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.big = big
        self.size_bytes = size_bytes

    def process(self, item: int) -> Any:
        return "x" * self.size_bytes if item == self.big else item


class Fan(Worker):
    """A generator: yields `count` outputs `[item, i, filler]` per item. With `pause_at`, waits at the gate
    `gate` once it has yielded that many (reached(gate) tells the test); with `fail_after`, raises after
    yielding that many."""

    def __init__(
        self,
        *,
        count: int = 100,
        filler_chars: int = 0,
        pause_at: int = -1,
        gate: str = "",
        fail_after: int = -1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.count, self.filler = count, "f" * filler_chars
        self.pause_at, self.gate, self.fail_after = pause_at, gate, fail_after

    def process(self, item: Any) -> Any:
        for i in range(self.count):
            if i == self.pause_at:
                reached(self.gate).set()
                gate(self.gate).wait(GATE_TIMEOUT_S)
            if i == self.fail_after:
                raise RuntimeError(f"failed after {i} outputs")
            yield [item, i, self.filler]


class SlowCollect(Worker):
    """A sink that records each item under `key` (fixture_workers.collected) after `delay_s`."""

    def __init__(self, *, key: str, delay_s: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.delay_s = delay_s

    def process(self, item: Any) -> None:
        time.sleep(self.delay_s)
        fixture_workers._record(fixture_workers._items, self.key, item)  # noqa: SLF001 - the shared registry
