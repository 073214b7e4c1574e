"""The one worker loop. A worker module says what it does with an item; this module does the rest."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from core.channel import DONE, Empty
from core.group import WorkerGroup
from core.ledger import Counts

logger = logging.getLogger(__name__)


class ItemError(Exception):
    """An item failed for a known reason (bad data, unknown symbol); logged without a traceback."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class Worker(threading.Thread):
    """One instance of a worker group: takes items, calls process() on each, puts outputs downstream.

    Items come from the group's input queue until DONE, or for a source from its `input_values`.
    Subclasses implement process() and may override setup(), teardown(), on_idle() and open_group().
    Their own keyword arguments are the group's `params`; they pass the rest on to this class.
    """

    #: Seconds get() waits before on_idle() runs; a batching sink flushes there.
    idle_timeout_s: float = 1.0
    #: True for workers that settle items later (in batches) rather than when process() returns.
    holds_items: bool = False

    def __init__(self, *, group: WorkerGroup, index: int = 0) -> None:
        super().__init__(name=f"{group.name}-{index}", daemon=True)
        self.group = group
        self.index = index
        self.counts = Counts()
        self.crash: BaseException | None = None
        self.finished = False

    def open_group(self) -> None:
        """Runs once per group, on instance 0, before any thread starts; raise to refuse the run."""

    def setup(self) -> None:
        """Runs in the worker's thread before its first item."""

    def process(self, item: Any) -> Iterable[Any] | None:
        """Handle one item; return (or yield) the outputs to send to every output queue."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(item)")

    def on_idle(self) -> None:
        """Runs when no item arrived for idle_timeout_s."""

    def teardown(self) -> None:
        """Runs in the worker's thread after its last item, even after a crash."""

    def run(self) -> None:
        try:
            self.setup()
            for item in self._items():
                self._handle(item)
        except Exception as exc:  # noqa: BLE001 - a crash ends this instance, never the pipeline
            self.crash = exc
            logger.exception("%s crashed; the rest of the pipeline goes on", self.name)
        finally:
            self._teardown()
            self.finished = True
            self.group.worker_exited(self)

    def emit(self, output: Any) -> None:
        """Send one output to every output queue (blocks while a queue is full)."""
        self.counts.emitted += 1
        for channel in self.group.outputs:
            channel.put(output)

    def fail(self, item: Any, exc: BaseException, *, log: bool = True) -> None:
        """Count `item` as failed and dead-letter it with the error."""
        attempts = getattr(exc, "attempts", 1)
        if log and isinstance(exc, ItemError):
            logger.warning("%s failed on %r: %s", self.name, item, exc)
        elif log:
            logger.warning("%s failed on %r: %s: %s", self.name, item, type(exc).__name__, exc, exc_info=exc)
        self.counts.failed += 1
        self.group.dead_letter(item, f"{type(exc).__name__}: {exc}", attempts=attempts, counts=self.counts)

    def _items(self) -> Iterator[Any]:
        source = self.group.input
        if source is None:
            while not self.group.stop.is_set():
                more, value = self.group.next_value()
                if not more:
                    return
                yield value
            return
        while True:
            try:
                item = source.get(self.idle_timeout_s)
            except Empty:
                self.on_idle()
                continue
            if item is DONE:
                return
            yield item

    def _handle(self, item: Any) -> None:
        self.counts.received += 1
        try:
            outputs = self.process(item)
            for output in outputs or ():
                self.emit(output)
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others
            self.fail(item, exc)
            return
        if not self.holds_items:
            self.counts.processed += 1

    def _teardown(self) -> None:
        try:
            self.teardown()
        except Exception as exc:  # noqa: BLE001
            self.crash = self.crash or exc
            logger.exception("%s: teardown failed", self.name)

    @property
    def input_queue(self):
        """The queue this instance reads (None for a source)."""
        return self.group.input

    @property
    def output_queues(self):
        """The queues every output goes to."""
        return self.group.outputs


class BatchWorker(Worker):
    """A sink that writes items in batches: when batch_size is reached, after flush_interval_s, at the end.

    Subclasses implement write_batch(items). A batch that fails is dead-lettered item by item.
    """

    holds_items = True

    def __init__(self, *, batch_size: int = 500, flush_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if batch_size < 1 or flush_interval_s <= 0:
            raise ValueError("batch_size must be >= 1 and flush_interval_s > 0")
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.idle_timeout_s = flush_interval_s
        self._clock = clock
        self._batch: list[Any] = []
        self._batch_started = 0.0

    def write_batch(self, items: list[Any]) -> None:
        """Store `items` all or nothing; raise to have them dead-lettered."""
        raise NotImplementedError(f"{type(self).__name__} must implement write_batch(items)")

    def process(self, item: Any) -> None:
        if not self._batch:
            self._batch_started = self._clock()
        self._batch.append(item)
        if len(self._batch) >= self.batch_size or self._clock() - self._batch_started >= self.flush_interval_s:
            self.flush()

    def on_idle(self) -> None:
        self.flush()

    def teardown(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Write the pending batch; on failure dead-letter each of its items."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self.write_batch(batch)
        except Exception as exc:  # noqa: BLE001 - the batch is dead-lettered, the sink goes on
            logger.error("%s: a batch of %d items failed, dead-lettering them: %s: %s",
                         self.name, len(batch), type(exc).__name__, exc)
            for item in batch:
                self.fail(item, exc, log=False)
            return
        self.counts.stored += len(batch)
        self.counts.processed += len(batch)
