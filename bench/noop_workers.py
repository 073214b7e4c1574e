"""Workers that do nothing, for measuring the runner's own overhead."""

from __future__ import annotations

import time
from typing import Any

from workers.base import BatchWorker, Worker


class CountSource(Worker):
    """Emits 0..count-1 for each input value `count`."""

    def process(self, count: int):
        yield from range(count)


class PassThrough(Worker):
    """Emits every item unchanged."""

    def process(self, item: Any) -> Any:
        return item


class Discard(Worker):
    """A sink that drops every item."""

    def process(self, item: Any) -> None:
        return None


class SlowSink(BatchWorker):
    """A batching sink that takes `delay_s` per batch: a stalled database, for the memory benchmark."""

    def __init__(self, *, delay_s: float = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s

    def write_batch(self, items: list[Any]) -> None:
        time.sleep(self.delay_s)


class RecordSource(Worker):
    """Emits `count` records of about 1 KiB each for each input value `count`."""

    def process(self, count: int):
        for n in range(count):
            yield {"n": n, "payload": f"{n:010d}".ljust(1024, "x")}  # a new string each
