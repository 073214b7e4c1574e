"""Tiny worker classes for the pipeline files that tests write (`location: fixture_workers`).

What a sink receives goes to a module-level registry under the sink's `key` param, so a test
can wait for and check exactly what arrived; a key that is an absolute path records to files instead, for
sinks that run in worker processes. A source can be held back by a named gate that
the test opens, so producers end in an order the test chooses instead of one it hopes for.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from collections import defaultdict
from typing import Any

from workers.base import BatchWorker, ItemError, Worker

#: A gate nobody opens lets its source go after this long, so a failing test cannot hang the run.
GATE_TIMEOUT_S = 20.0

_changed = threading.Condition()
_items: dict[str, list[Any]] = defaultdict(list)
_batches: dict[str, list[list[Any]]] = defaultdict(list)
_gates: dict[str, threading.Event] = defaultdict(threading.Event)


def collected(key: str) -> list[Any]:
    """Items the Collect sink under `key` has received so far, in arrival order."""
    if _on_file(key):
        return _read(f"{key}.items")
    with _changed:
        return list(_items[key])


def batches(key: str) -> list[list[Any]]:
    """Batches the BatchCollect sink under `key` has written so far."""
    if _on_file(key):
        return _read(f"{key}.batches")
    with _changed:
        return [list(batch) for batch in _batches[key]]


def wait_collected(key: str, count: int, timeout_s: float = 10.0) -> list[Any]:
    """Wait until at least `count` items arrived under `key` (as items or in batches); return them."""

    def arrived() -> list[Any]:
        if _on_file(key):
            return collected(key) + [item for batch in batches(key) for item in batch]
        return _items[key] + [item for batch in _batches[key] for item in batch]

    if _on_file(key):  # written by another process: no condition to wait on, so look every 10 ms
        deadline = time.monotonic() + timeout_s
        while len(got := arrived()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return got
    with _changed:
        _changed.wait_for(lambda: len(arrived()) >= count, timeout_s)
        return list(arrived())


def gate(name: str) -> threading.Event:
    """The gate `name`; a Source with `gate: name` emits nothing until it is set."""
    with _changed:
        return _gates[name]


def forget(key: str) -> None:
    """Drop everything recorded under `key` (items, batches and the gate of that name)."""
    if _on_file(key):
        for suffix in (".items", ".batches"):
            try:
                os.remove(f"{key}{suffix}")
            except FileNotFoundError:
                pass
    with _changed:
        _items.pop(key, None)
        _batches.pop(key, None)
        _gates.pop(key, None)
        _gates.pop(f"{key}-writing", None)


def _record(registry: dict[str, list[Any]], key: str, value: Any) -> None:
    if _on_file(key):  # a sink in a worker process: the test reads the file
        suffix = ".items" if registry is _items else ".batches"
        with open(f"{key}{suffix}", "a", encoding="utf-8") as file:
            file.write(json.dumps(value) + "\n")  # one write per line, appended: processes do not interleave
        return
    with _changed:
        registry[key].append(value)
        _changed.notify_all()


def _on_file(key: str) -> bool:
    """A key that is an absolute path records to files beside it (for sinks in worker processes)."""
    return key.startswith("/")


def _read(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.endswith("\n")]
    except FileNotFoundError:
        return []


class Source(Worker):
    """Emits each input value as is; with `gate`, waits for the test to open that gate first."""

    def __init__(self, *, gate: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def process(self, item: Any) -> Any:
        if self.gate:
            gate(self.gate).wait(GATE_TIMEOUT_S)
        return item


class Multiply(Worker):
    """Multiplies each number by `factor`."""

    def __init__(self, *, factor: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def process(self, item: int) -> int:
        return item * self.factor


class FailOdd(Worker):
    """Passes even numbers on and fails every odd one with an ItemError."""

    def process(self, item: int) -> int:
        if item % 2:
            raise ItemError(f"odd number {item}")
        return item


class Slow(Worker):
    """Passes each item on after `delay_s`, so the stage behind it stays busy."""

    def __init__(self, *, delay_s: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s

    def process(self, item: Any) -> Any:
        time.sleep(self.delay_s)
        return item


class Collect(Worker):
    """A sink: records every item under `key` (a required param)."""

    def __init__(self, *, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key

    def process(self, item: Any) -> None:
        _record(_items, self.key, item)


class BatchCollect(BatchWorker):
    """A batching sink: records each batch it writes under `key`."""

    def __init__(self, *, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key

    def write_batch(self, items: list[Any]) -> None:
        _record(_batches, self.key, list(items))


class BufferedSink(Worker):
    """A sink with a buffer of its own, as a file sink has: process() only appends to it; flush() writes it out
    (to `{key}.items`, read by collected(key)) and teardown() flushes and closes. What each instance has taken is
    recorded under `{key}-seen` as it takes it, so a test can wait for items taken and not yet written out."""

    def __init__(
        self, *, key: str, flush_every: int = 100, delay_s: float = 0.0, fail_flush: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.flush_every = flush_every
        self.delay_s = delay_s
        self.fail_flush = fail_flush  # the fail_flush-th flush() of each instance raises, its buffer not written
        self.flushes = 0
        self.buffer: list[Any] = []

    def process(self, item: Any) -> None:
        time.sleep(self.delay_s)
        self.buffer.append(item)
        _record(_items, f"{self.key}-seen", item)

    def flush(self) -> None:
        buffer, self.buffer = self.buffer, []
        self.flushes += 1
        if self.flushes == self.fail_flush:
            raise OSError(f"{self.name}: the disk is full ({len(buffer)} item(s) not written)")
        if _on_file(self.key):
            with open(f"{self.key}.items", "a", encoding="utf-8") as file:
                file.write("".join(json.dumps(item) + "\n" for item in buffer))  # one write: no torn lines
            return
        for item in buffer:
            _record(_items, self.key, item)

    def teardown(self) -> None:
        self.flush()


class AsyncBufferedSink(BufferedSink):
    """BufferedSink as asyncio tasks: async process() and flush()."""

    async def process(self, item: Any) -> None:  # type: ignore[override]
        BufferedSink.process(self, item)

    async def flush(self) -> None:  # type: ignore[override]
        BufferedSink.flush(self)

    async def teardown(self) -> None:  # type: ignore[override]
        await self.flush()


class CrashesInSetup:
    """Mixin for any worker: setup() raises in every instance, or only in the one numbered `crash_index`."""

    def __init__(self, *, crash_index: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash_index = crash_index

    def setup(self) -> None:
        if self.crash_index in (-1, self.index):
            raise RuntimeError(f"{self.name}: cannot set up")
        super().setup()


class CrashInSetup(CrashesInSetup, Worker):
    """Crashes before its first item: every instance, or only the one numbered `crash_index`."""

    def process(self, item: Any) -> Any:
        return item


class RefuseOpen(Worker):
    """A group that refuses to start: open_group() raises before any thread starts."""

    def open_group(self) -> None:
        raise ConnectionError("database unreachable")

    def process(self, item: Any) -> Any:
        return item


class NotAWorker:
    """A class that is not a Worker, for the config check that refuses it."""


class Square(Worker):
    """Returns item * item: one output, the way a user first writes it."""

    def process(self, item: int) -> int:
        return item * item


class Explode(Worker):
    """Yields `item` copies of the item: a generator gives many outputs (0 gives none)."""

    def process(self, item: int):
        for _ in range(item):
            yield item


class FailAfterYield(Worker):
    """Yields one output, then fails: the item fails whole and nothing it yielded goes on."""

    def process(self, item: int):
        yield item
        raise ItemError(f"failed after yielding for {item}")


class ExitMidItem(Worker):
    """Passes items on, but ends its instance (SystemExit, as a careless sys.exit() would) on item `at`."""

    def __init__(self, *, at: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.at = at

    def process(self, item: int) -> int:
        if item == self.at:
            raise SystemExit(f"{self.name} exits in the middle of item {item}")
        return item


class BatchExits(BatchCollect):
    """A batching sink whose write of batch number `exit_on_batch` (1-based) ends its instance with SystemExit."""

    def __init__(self, *, exit_on_batch: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exit_on_batch = exit_on_batch
        self.writes = 0

    def write_batch(self, items: list[Any]) -> None:
        self.writes += 1
        if self.writes == self.exit_on_batch:
            raise SystemExit(f"{self.name} exits writing a batch of {len(items)}")
        super().write_batch(items)


class BrokenJudge(BatchCollect):
    """A batching sink whose writes fail and whose is_transient() itself raises: an error escaping a flush."""

    def write_batch(self, items: list[Any]) -> None:
        raise ValueError("refused")

    def is_transient(self, exc: BaseException) -> bool:
        raise RuntimeError("is_transient is broken")


class RefuseOne(BatchCollect):
    """A batching sink that refuses (for its data, not transiently) any batch holding item `bad`."""

    def __init__(self, *, bad: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bad = bad

    def write_batch(self, items: list[Any]) -> None:
        if self.bad in items:
            raise ValueError(f"row {self.bad} violates a constraint")
        super().write_batch(items)


class GatedBatch(BatchCollect):
    """A batching sink whose writes wait for the gate named `key` (a database stall); it opens the gate
    `<key>-writing` when a write starts waiting."""

    def write_batch(self, items: list[Any]) -> None:
        gate(f"{self.key}-writing").set()
        gate(self.key).wait(GATE_TIMEOUT_S)
        super().write_batch(items)


class Unpicklable(Worker):
    """Passes items on, but item `bad` becomes something pickle refuses (a lock)."""

    def __init__(self, *, bad: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bad = bad

    def process(self, item: int) -> Any:
        return threading.Lock() if item == self.bad else item


class ProcessState(Worker):
    """Passes items on; at teardown records under `key` (a file path) what state() says of the process it
    ran in."""

    def __init__(self, *, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key

    def process(self, item: Any) -> Any:
        return item

    def teardown(self) -> None:
        _record(_items, self.key, {"pid": os.getpid(), **self.state()})

    def state(self) -> dict[str, Any]:
        raise NotImplementedError


class CollectorState(ProcessState):
    """Records whether cyclic garbage collection is on and start-up's objects are frozen in its process
    (core/base/collector.py), once start-up is over there: an instance can end before another one of its process
    has even set up (seen on a loaded machine); and the size of that process's descriptor table
    (core/base/descriptors.py)."""

    def state(self) -> dict[str, Any]:
        from core.base.collector import startup_gc

        deadline = time.monotonic() + 10
        while startup_gc.paused and time.monotonic() < deadline:  # no event to wait on: gc has no hook
            time.sleep(0.01)
        return {
            "collecting": gc.isenabled(),
            "frozen": gc.get_freeze_count() > 0,
            "young_threshold": gc.get_threshold()[0],
            "fd_table": fd_table_size(),
        }


def fd_table_size() -> int:
    """How many descriptors this process's table holds now (Linux: FDSize in /proc/self/status)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("FDSize:"))


class AsyncCollectorState(CollectorState):
    """CollectorState as an asyncio worker."""

    async def process(self, item: Any) -> Any:
        return item


class Preloading(ProcessState):
    """Lists fixture_preloaded in `preload` and never imports it; records where it was imported (None:
    nowhere), once the run's preload thread, if any, has ended."""

    preload = ("fixture_preloaded",)

    def state(self) -> dict[str, Any]:
        for thread in threading.enumerate():
            if thread.name == "preload":
                thread.join(10)
        import sys

        module = sys.modules.get("fixture_preloaded")
        return {"imported_in": module.IMPORTED_IN if module else None}


class PreloadsNothing(Collect):
    """A sink whose `preload` is not module names."""

    preload = 42


class AsyncPreloading(Preloading):
    """Preloading as an asyncio worker."""

    async def process(self, item: Any) -> Any:
        return item


class Loaded(Worker):
    """Emits [item, whether `module` is loaded in the process it runs in]."""

    def __init__(self, *, module: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.module = module

    def process(self, item: Any) -> Any:
        import sys

        return [item, self.module in sys.modules]


class AsyncDouble(Worker):
    """An asyncio worker: doubles each number after `delay_s` of asyncio.sleep."""

    def __init__(self, *, delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s

    async def process(self, item: int) -> int:
        import asyncio

        await asyncio.sleep(self.delay_s)
        return 2 * item


class AsyncFailOdd(Worker):
    """An asyncio worker that passes even numbers on and fails odd ones."""

    async def process(self, item: int) -> int:
        if item % 2:
            raise ItemError(f"odd number {item}")
        return item


class AsyncCrashInSetup(Worker):
    """An asyncio worker whose setup raises in every task."""

    async def setup(self) -> None:
        raise RuntimeError(f"{self.name}: cannot set up")

    async def process(self, item: int) -> int:
        return item


class AsyncYield(Worker):
    """An asyncio worker that yields `item` copies of each item (an async generator)."""

    async def process(self, item: int):
        for _ in range(item):
            yield item


_in_flight: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # key: [now, peak]


def peak_in_flight(key: str) -> int:
    """The most items AsyncGauge under `key` held at once."""
    return _in_flight[key][1]


class AsyncGauge(Worker):
    """An asyncio worker that holds each item `delay_s` and records how many it held at once under `key`."""

    def __init__(self, *, key: str, delay_s: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.delay_s = delay_s

    async def process(self, item: int) -> int:
        import asyncio

        gauge = _in_flight[self.key]
        gauge[0] += 1
        gauge[1] = max(gauge[1], gauge[0])
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            gauge[0] -= 1
        return item


class DiesOn(Worker):
    """Passes items on, but its whole worker process dies on each item in `die_on` (SIGKILL by default, as the OOM
    killer or a segfault in a C library would; or `os._exit(exit_code)`), before anything of that item is sent."""

    def __init__(self, *, die_on: list[int] = (), exit_code: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on = set(die_on)
        self.exit_code = exit_code

    def process(self, item: int) -> int:
        if item in self.on:
            if self.exit_code:
                os._exit(self.exit_code)
            os.kill(os.getpid(), 9)
        return item


def _connections() -> list[Any]:
    """The multiprocessing connections the frames of this process's threads hold (a worker process's pipe)."""
    import multiprocessing.connection
    import sys

    found = {}
    for frame in sys._current_frames().values():
        while frame is not None:
            for value in frame.f_locals.values():
                if isinstance(value, multiprocessing.connection.Connection):
                    found[id(value)] = value
            frame = frame.f_back
    return list(found.values())


class ClosesItsPipe(Worker):
    """On item `at`, shuts its worker process's pipe to the runner down while the process stays alive (its exit
    on the pipe's end is held back), sleeps `sleep_s`, then records the item under `key` as a sink would: a
    process the runner gave up on must be killed before it does that."""

    def __init__(self, *, at: int = 0, key: str = "", sleep_s: float = 8.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.at, self.key, self.sleep_s = at, key, sleep_s

    def process(self, item: int) -> int:
        if item == self.at:
            import socket

            os._exit = lambda code: threading.Event().wait()  # the process outlives its pipe (a stuck exit)
            for conn in _connections():
                socket.socket(fileno=os.dup(conn.fileno())).shutdown(socket.SHUT_RDWR)
            time.sleep(self.sleep_s)
            _record(_items, self.key, item)
        return item


class YieldMany(Worker):
    """Yields `count` outputs for each item (item * 100000 + n), then fails if `fail`; with `bad_at`, that output
    is a lock, which neither pickle nor JSON can carry."""

    def __init__(self, *, count: int = 100, fail: bool = False, bad_at: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count, self.fail, self.bad_at = count, fail, bad_at

    def process(self, item: int):
        for n in range(self.count):
            yield threading.Lock() if n == self.bad_at else item * 100000 + n
        if self.fail:
            raise ItemError(f"failed after yielding {self.count} outputs for {item}")


class FailEvery(Worker):
    """Fails every item with a ValueError that names it (an unexpected error: logged with its traceback)."""

    def process(self, item: Any) -> Any:
        raise ValueError(f"no price for {item!r}")
