"""The one worker loop. A worker module says what it does with an item; this module does the rest."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from core.channel import DONE, Empty
from core.errors import ItemError
from core.group import WorkerGroup
from core.ledger import Counts

logger = logging.getLogger(__name__)
_NOTHING = object()

__all__ = ["BatchWorker", "ItemError", "Worker"]


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
        self._in_hand: Any = _NOTHING

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
                started = time.perf_counter()
                self._in_hand = item
                self._handle(item)
                self._in_hand = _NOTHING
                self.counts.busy_s += time.perf_counter() - started
        except Exception as exc:  # noqa: BLE001 - a crash ends this instance, never the pipeline
            self.crash = exc
            logger.exception("%s crashed; the rest of the pipeline goes on", self.name)
        finally:
            self._teardown()
            self.finished = True
            self.group.worker_exited(self)

    def in_hand(self) -> list[Any]:
        """Items taken but not yet settled (for a forced exit to dead-letter)."""
        item = self._in_hand
        return [] if item is _NOTHING else [item]

    def emit(self, output: Any) -> None:
        """Send one output to every output queue (blocks while a queue is full)."""
        self.counts.emitted += 1
        for channel in self.group.outputs:
            started = time.perf_counter()
            channel.put(output)
            self.counts.blocked_s += time.perf_counter() - started

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
                started = time.perf_counter()
                self.on_idle()
                self.counts.busy_s += time.perf_counter() - started
                continue
            if item is DONE:
                return
            yield item

    def _handle(self, item: Any) -> None:
        self.counts.received += 1
        if self.group.stop.is_set() and self.group.outputs:
            # Stopping: a sink still stores what reaches it, other stages take no new work.
            self.group.dead_letter(item, "not processed: the pipeline was stopping", counts=self.counts)
            return
        try:
            outputs = self.process(item)
            if isinstance(outputs, (str, bytes, dict)):  # one record, not an iterable of outputs
                outputs = (outputs,)
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


class BatchWorker(Worker):
    """A sink that writes items in batches: when batch_size is reached, after flush_interval_s, at the end.

    Subclasses implement write_batch(items), all or nothing, and is_transient(exc). A batch that fails
    transiently (connection lost) is retried whole with backoff; one that fails for its data is split
    in halves until the bad items are alone, so they are dead-lettered and the rest are stored.
    """

    holds_items = True

    def __init__(self, *, batch_size: int = 500, flush_interval_s: float = 1.0, write_retries: int = 5,
                 retry_backoff_s: float = 0.5, retry_backoff_max_s: float = 8.0,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if batch_size < 1 or flush_interval_s <= 0 or write_retries < 0:
            raise ValueError("batch_size must be >= 1, flush_interval_s > 0 and write_retries >= 0")
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.idle_timeout_s = flush_interval_s
        self.write_retries = write_retries
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self._clock = clock
        self._batch: list[Any] = []
        self._batch_started = 0.0
        self._failing = False  # the last batch spent its retries: try the next ones once each

    def write_batch(self, items: list[Any]) -> None:
        """Store `items` all or nothing; raise to have them retried or dead-lettered."""
        raise NotImplementedError(f"{type(self).__name__} must implement write_batch(items)")

    def is_transient(self, exc: BaseException) -> bool:
        """True when writing the same batch again may succeed (a lost connection, a restarting server)."""
        return False

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

    def in_hand(self) -> list[Any]:
        batch = list(self._batch)
        return batch + [item for item in super().in_hand() if not any(item is b for b in batch)]

    def flush(self) -> None:
        """Write the pending batch; whatever cannot be written is dead-lettered."""
        batch, self._batch = self._batch, []
        if batch:
            self._write(batch)

    def _write(self, batch: list[Any]) -> None:
        error = self._write_with_retries(batch)
        if error is None:
            self.counts.stored += len(batch)
            self.counts.processed += len(batch)
        elif not self.is_transient(error) and len(batch) > 1:
            half = len(batch) // 2
            self._write(batch[:half])
            self._write(batch[half:])
        else:
            logger.error("%s: %d item(s) could not be written, dead-lettering them: %s: %s",
                         self.name, len(batch), type(error).__name__, error)
            for item in batch:
                self.fail(item, error, log=False)

    def _write_with_retries(self, batch: list[Any]) -> BaseException | None:
        attempts = 1 if self._failing else self.write_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self.write_batch(batch)
            except Exception as exc:  # noqa: BLE001 - retried, split or dead-lettered by the caller
                exc.attempts = attempt
                if not self.is_transient(exc):
                    return exc
                if attempt == attempts:
                    self._failing = True
                    return exc
                wait_s = min(self.retry_backoff_s * 2 ** (attempt - 1), self.retry_backoff_max_s)
                logger.warning("%s: writing %d item(s) failed (%s); retry %d/%d in %.1fs", self.name,
                               len(batch), type(exc).__name__, attempt, attempts - 1, wait_s)
                self.group.stop.wait(wait_s)  # a stopping pipeline spends the retries without waiting
            else:
                self._failing = False
                return None
        raise AssertionError("unreachable")
