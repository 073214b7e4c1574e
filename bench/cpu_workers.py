"""Workers for the process benchmarks: pure-Python CPU work, paced time stamps, an asyncio pass-through."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from workers.base import Worker

#: Loops of spin() that take about 20 ms on the 2-core bench machine (Python 3.11); bench/processes_cpu.py
#: calibrates its own number and passes it as `loops`.
LOOPS_20MS = 100_000


def spin(item: int, loops: int = LOOPS_20MS) -> int:
    """Pure-Python CPU work that holds the GIL throughout: an LCG stepped `loops` times from `item`."""
    state = item
    for _ in range(loops):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
    return state


class Spin(Worker):
    """Emits spin(item): about 20 ms of pure-Python CPU per item."""

    def __init__(self, *, loops: int = LOOPS_20MS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loops = loops

    def process(self, item: int) -> int:
        return spin(item, self.loops)


class PacedStamps(Worker):
    """A source: input value n is emitted at start + n x interval_s, as the time.monotonic() it left.

    Not a generator: a generator's outputs go on only once it has finished (core/run/spool.py), which would
    hold every stamp until the last; one input value per item goes on at once.
    """

    def __init__(self, *, interval_s: float = 0.02, start_delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interval_s = interval_s
        self.start_delay_s = start_delay_s  # lets worker processes start first: latency, not start-up, is measured
        self.start = None

    def process(self, n: int) -> float:
        if self.start is None:
            self.start = time.monotonic() + self.start_delay_s - n * self.interval_s
        delay_s = self.start + n * self.interval_s - time.monotonic()
        if delay_s > 0:
            time.sleep(delay_s)
        return time.monotonic()  # CLOCK_MONOTONIC is system-wide: comparable in another process


class LatencySink(Worker):
    """A sink that records now - item (a time.monotonic() stamp) and writes the list to `out_path` at the end."""

    def __init__(self, *, out_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_path = out_path
        self.latencies_s: list[float] = []

    def process(self, stamp: float) -> None:
        self.latencies_s.append(time.monotonic() - stamp)

    def teardown(self) -> None:
        Path(self.out_path).write_text(json.dumps(self.latencies_s))


class RateSink(Worker):
    """A sink that notes when its first and last item came (time.monotonic(), system-wide) and writes
    {"items", "first", "last"} to `out_path`, or with several instances to `<out_dir>/<instance name>.json`
    (bench/redis_workers.py sink_rate reads them together)."""

    def __init__(self, *, out_path: str = "", out_dir: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if bool(out_path) == bool(out_dir):
            raise ValueError("give out_path or out_dir")
        self.out_path = out_path or str(Path(out_dir, f"{self.name}.json"))
        self.items = 0
        self.first = self.last = 0.0

    def process(self, item: Any) -> None:
        self.last = time.monotonic()
        if not self.items:
            self.first = self.last
        self.items += 1

    def teardown(self) -> None:
        Path(self.out_path).write_text(json.dumps({"items": self.items, "first": self.first, "last": self.last}))


class AsyncPassThrough(Worker):
    """Emits every item unchanged, as a coroutine (the group runs as asyncio tasks)."""

    async def process(self, item: Any) -> Any:
        return item


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]
