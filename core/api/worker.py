"""The worker API: what a worker class says about one item. Where it runs (a thread, an asyncio task,
a child process) and everything around the item (queues, DONE, counting, dead letters) is core.run.loop's.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias

from core.base.errors import ItemError

__all__ = ["BatchWorker", "Group", "Hook", "ItemError", "Worker", "flushes", "holds", "is_async"]

#: What a hook (setup, on_idle, flush, teardown) returns: None, or an awaitable where the worker is async.
Hook: TypeAlias = "None | Awaitable[None]"


class Group(Protocol):
    """What a worker sees of its group (core.run.group.WorkerGroup): its name, spec, stop event and the
    resources its instances share."""

    name: str
    spec: Any  # core.pipeline.specs.WorkerSpec
    stop: threading.Event

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """The one object under `key` for the whole group (in this process), made by `factory` on first use."""


class Worker:
    """One instance of a worker group. Subclasses implement process(item); their own keyword arguments
    are the group's `params`, and they pass the rest (`group`, `index`) on to this class.

    process() returns ONE output, or None for none; a generator function (`yield`) gives many.
    Declare it `async def` and the group runs as asyncio tasks, `instances` of them on one event loop.
    Optional hooks: setup() / teardown() around the instance's items (async def too for an async
    worker), on_idle() after idle_timeout_s without an item, flush() for a worker that buffers,
    open_group() once per group before the run starts (raise to refuse the run), check_params() for
    `--check`; `preload` names modules to import early.
    """

    #: Seconds without an item before on_idle() runs.
    idle_timeout_s: float = 1.0
    #: Modules the instances will import in setup() or on their first item (a client library, a parser).
    #: The runner imports them in a background thread as the run starts, while it opens the groups, so
    #: their waits (reading files, loading certificates) overlap with other work; a worker process has
    #: them imported once, in the fork server. A module that fails to import here fails where it is used.
    preload: tuple[str, ...] = ()
    #: A worker that defines flush(): the loop calls it once flush_every items were processed since the last
    #: one, flush_interval_s after the first of them, when no item comes, and before teardown().
    flush_every: int = 1000
    flush_interval_s: float = 1.0

    def __init__(self, *, group: Group, index: int = 0) -> None:
        self.group = group
        self.index = index
        self.name = f"{group.name}-{index}"

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        """(param, message) for each problem with `params` that is known before the run."""
        return []

    def open_group(self) -> None:
        """Runs once per group (on instance 0) before anything starts; raise to refuse the run."""

    def setup(self) -> Hook:
        """Runs where the instance runs, before its first item."""

    def process(self, item: Any) -> Any:
        """Handle one item: return one output (None for none), or yield several."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(item)")

    def on_idle(self) -> Hook:
        """Runs when no item arrived for idle_timeout_s."""

    def flush(self) -> Hook:
        """Write out what process() buffered (async def too for an async worker). Define it in a worker that
        keeps items in a buffer of its own (a file, a client's batch): its items are then settled (counted done,
        acknowledged) only once a flush() after them has returned, so that a forced exit dead-letters what was
        still in the buffer as `abandoned` instead of counting it done. If it raises, the items since the last
        flush() are dead-lettered with its error."""

    def teardown(self) -> Hook:
        """Runs after the instance's last item, even after a crash."""


class BatchWorker(Worker):
    """A sink that writes items in batches: when batch_size is reached, after flush_interval_s, at the end.

    Subclasses implement write_batch(items), all or nothing, and is_transient(exc). The loop holds the
    items until their batch is written: a batch that fails transiently (connection lost) is retried whole
    with backoff; one that fails for its data is split in halves until the bad items are alone, so they
    are dead-lettered and the rest stored; whatever happens, no held item goes unrecorded.
    """

    def __init__(
        self,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        write_retries: int = 5,
        retry_backoff_s: float = 0.5,
        retry_backoff_max_s: float = 8.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if batch_size < 1 or flush_interval_s <= 0 or write_retries < 0:
            raise ValueError("batch_size must be >= 1, flush_interval_s > 0 and write_retries >= 0")
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.idle_timeout_s = flush_interval_s
        self.write_retries = write_retries
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s

    def write_batch(self, items: list[Any]) -> None:
        """Store `items` all or nothing; raise to have them retried, split or dead-lettered."""
        raise NotImplementedError(f"{type(self).__name__} must implement write_batch(items)")

    def is_transient(self, exc: BaseException) -> bool:
        """True when writing the same batch again may succeed (a lost connection, a restarting server)."""
        return False


def flushes(cls: type) -> bool:
    """True when the class defines flush(): its items are settled once a flush() after them has returned."""
    return issubclass(cls, Worker) and cls.flush is not Worker.flush and not issubclass(cls, BatchWorker)


def holds(worker: Any) -> int:
    """How many processed items an instance may hold unsettled: a batch, the items since the last flush(), or 1."""
    if isinstance(worker, BatchWorker):
        return worker.batch_size
    return max(int(worker.flush_every), 1) if flushes(type(worker)) else 1


def is_async(cls: type) -> bool:
    """True when the class's process() is `async def` (a coroutine or an async generator)."""
    process = getattr(cls, "process", None)
    return inspect.iscoroutinefunction(process) or inspect.isasyncgenfunction(process)
