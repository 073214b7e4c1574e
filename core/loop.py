"""The one item loop: take, process, emit, settle, count, dead-letter. Written once; a thread drives it
with run(), an asyncio task with arun(), and a child process runs the same drivers on its own side
of a pipe. They differ only in how items arrive (the inbox) and leave (the Exits).

An instance never leaves an item unrecorded: every item it takes is held until it is settled (emitted,
stored or dead-lettered), and whatever it still holds when it ends, by a crash included, is dead-lettered.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import Any, Awaitable, Callable, Protocol

from core.errors import ItemError
from core.ledger import Counts
from core.queues import DONE, Delivery, Empty
from core.worker import BatchWorker, Worker, async_outputs_of, outputs_of

logger = logging.getLogger(__name__)


class Inbox(Protocol):
    """Where an instance's items come from (a queue of any transport)."""

    def get(self, timeout_s: float | None = None) -> Delivery | Any: ...


class Exits(Protocol):
    """Where an instance's items go, and how they are settled with their transport."""

    def emit(self, delivery: Delivery, outputs: list[Any]) -> None:
        """Send every output to every output queue, then settle the delivery; raise only before sending."""

    async def aemit(self, delivery: Delivery, outputs: list[Any]) -> None:
        """emit() without blocking an event loop."""

    def stored(self, deliveries: list[Delivery]) -> None:
        """A batch sink wrote these: settle them."""

    def dead_letter(self, delivery: Delivery, error: str, *, attempts: int, kind: str) -> bool:
        """Record the item as dead-lettered and settle it; False when the record could not be written."""


class Instance:
    """One running copy of a worker and the loop around it; `counts` are its ledger."""

    def __init__(self, worker: Worker, *, exits: Exits, stop: threading.Event,
                 on_exit: Callable[[Instance], None] = lambda instance: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self.name = worker.name
        self.exits = exits
        self.stop = stop
        self.counts = Counts()
        self.crash: BaseException | None = None
        self.finished = False
        self.batching = isinstance(worker, BatchWorker)
        self._on_exit = on_exit
        self._clock = clock
        #: Called once per settled item (an async runner frees a slot for the next one).
        self.on_release: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._held: dict[int, Delivery] = {}
        self._batch: list[Delivery] = []
        self._batch_due = 0.0
        self._failing = False  # the last batch spent its retries: try the next ones once each

    # --- the drivers ------------------------------------------------------------------------------

    def run(self, inbox: Inbox) -> None:
        """Drive the loop in this thread until DONE."""
        try:
            self.worker.setup()
            while (delivery := self._take(inbox)) is not DONE:
                started = time.perf_counter()
                self._hold(delivery)
                if self.batching:
                    self._add_to_batch(delivery)
                else:
                    self._handle(delivery)
                self.counts.busy_s += time.perf_counter() - started
            self._flush()
        except BaseException as exc:  # recorded and logged: the thread ends here either way
            self._crashed(exc)
        finally:
            try:
                self.worker.teardown()
            except Exception as exc:  # noqa: BLE001
                self._teardown_failed(exc)
            self._end()

    async def arun(self, take: Callable[[float], Awaitable[Delivery | Any]]) -> None:
        """Drive the loop as an asyncio task; `take(timeout_s)` awaits the next delivery or raises Empty."""
        try:
            await _maybe_await(self.worker.setup())
            while True:
                try:
                    delivery = await take(self.worker.idle_timeout_s)
                except Empty:
                    await _maybe_await(self.worker.on_idle())
                    continue
                if delivery is DONE:
                    break
                started = time.perf_counter()
                self._hold(delivery)
                try:
                    outputs = await async_outputs_of(self.worker.process(delivery.item))
                    emitting = time.perf_counter()
                    await self.exits.aemit(delivery, outputs)
                    self.counts.blocked_s += time.perf_counter() - emitting
                except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others
                    self._fail(delivery, exc)
                else:
                    self._emitted(delivery, outputs)
                self.counts.busy_s += time.perf_counter() - started
        except BaseException as exc:
            self._crashed(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise  # the loop is being torn down: the task must end as cancelled
        finally:
            try:
                await _maybe_await(self.worker.teardown())
            except Exception as exc:  # noqa: BLE001
                self._teardown_failed(exc)
            self._end()

    # --- what the drivers share ------------------------------------------------------------------

    def in_hand(self) -> list[Delivery]:
        """Deliveries taken and not yet settled (the batch included), for a forced exit to record."""
        with self._lock:
            return list(self._held.values())

    def _take(self, inbox: Inbox) -> Delivery | Any:
        while True:
            wait_s = self.worker.idle_timeout_s
            if self._batch:
                wait_s = max(min(wait_s, self._batch_due - self._clock()), 0.0)
            try:
                return inbox.get(wait_s)
            except Empty:
                started = time.perf_counter()
                if self._batch:
                    self._flush()
                else:
                    self.worker.on_idle()
                self.counts.busy_s += time.perf_counter() - started

    def _handle(self, delivery: Delivery) -> None:
        try:
            outputs = outputs_of(self.worker.process(delivery.item))
            emitting = time.perf_counter()
            self.exits.emit(delivery, outputs)
            self.counts.blocked_s += time.perf_counter() - emitting
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others
            self._fail(delivery, exc)
        else:
            self._emitted(delivery, outputs)

    def _emitted(self, delivery: Delivery, outputs: list[Any]) -> None:
        self.counts.emitted += len(outputs)
        self.counts.processed += 1
        self._release(delivery)

    def _fail(self, delivery: Delivery, exc: BaseException, *, log: bool = True) -> None:
        if log and isinstance(exc, ItemError):
            logger.warning("%s failed on %r: %s", self.name, delivery.item, exc)
        elif log:
            logger.warning("%s failed on %r: %s: %s", self.name, delivery.item, type(exc).__name__, exc,
                           exc_info=exc)
        self.counts.failed += 1
        self._dead_letter(delivery, f"{type(exc).__name__}: {exc}", attempts=getattr(exc, "attempts", 1))

    def _dead_letter(self, delivery: Delivery, error: str, *, attempts: int = 1, kind: str = "failed") -> None:
        if self.exits.dead_letter(delivery, error, attempts=attempts, kind=kind):
            self.counts.dead_lettered += 1
        else:
            self.counts.unrecorded += 1
        self._release(delivery)

    def _hold(self, delivery: Delivery) -> None:
        self.counts.received += 1
        with self._lock:
            self._held[id(delivery)] = delivery

    def _release(self, delivery: Delivery) -> None:
        with self._lock:
            held = self._held.pop(id(delivery), None)
        if held is not None and self.on_release is not None:
            self.on_release()

    def _crashed(self, exc: BaseException) -> None:
        self.crash = exc
        if isinstance(exc, Exception):
            logger.exception("%s crashed; the rest of the pipeline goes on", self.name)
        else:
            logger.error("%s ended by %s; the rest of the pipeline goes on", self.name, type(exc).__name__)

    def _teardown_failed(self, exc: Exception) -> None:
        self.crash = self.crash or exc
        logger.exception("%s: teardown failed", self.name)

    def _end(self) -> None:
        """Dead-letter whatever is still held, then tell the runner this instance ended."""
        left = self.in_hand()
        if left:
            why = f"{type(self.crash).__name__}: {self.crash}" if self.crash else "the instance ended"
            logger.error("%s ended holding %d item(s); dead-lettering them", self.name, len(left))
            for delivery in left:
                self._dead_letter(delivery, f"crashed: {why}", kind="crashed")
        self._batch = []
        self.finished = True
        self._on_exit(self)

    # --- batching sinks ----------------------------------------------------------------------------

    def _add_to_batch(self, delivery: Delivery) -> None:
        if not self._batch:
            self._batch_due = self._clock() + self.worker.flush_interval_s
        self._batch.append(delivery)
        if len(self._batch) >= self.worker.batch_size or self._clock() >= self._batch_due:
            self._flush()

    def _flush(self) -> None:
        """Write the held batch; whatever cannot be written is dead-lettered, even if the writing itself
        raises where it should not (in is_transient, say)."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self._write(batch)
        except Exception as exc:  # noqa: BLE001 - the batch is recorded, then the loop goes on
            logger.exception("%s: writing a batch failed unexpectedly", self.name)
            held = {id(d) for d in self.in_hand()}
            for delivery in batch:
                if id(delivery) in held:
                    self._fail(delivery, exc, log=False)

    def _write(self, batch: list[Delivery]) -> None:
        error = self._write_with_retries(batch)
        if error is None:
            self.exits.stored(batch)
            self.counts.stored += len(batch)
            self.counts.processed += len(batch)
            for delivery in batch:
                self._release(delivery)
        elif not self.worker.is_transient(error) and len(batch) > 1:
            half = len(batch) // 2
            self._write(batch[:half])
            self._write(batch[half:])
        else:
            logger.error("%s: %d item(s) could not be written, dead-lettering them: %s: %s",
                         self.name, len(batch), type(error).__name__, error)
            for delivery in batch:
                self._fail(delivery, error, log=False)

    def _write_with_retries(self, batch: list[Delivery]) -> BaseException | None:
        worker: BatchWorker = self.worker
        attempts = 1 if self._failing else worker.write_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                worker.write_batch([delivery.item for delivery in batch])
            except Exception as exc:  # noqa: BLE001 - retried, split or dead-lettered by the caller
                exc.attempts = attempt
                if not worker.is_transient(exc):
                    return exc
                if attempt == attempts:
                    self._failing = True
                    return exc
                wait_s = min(worker.retry_backoff_s * 2 ** (attempt - 1), worker.retry_backoff_max_s)
                logger.warning("%s: writing %d item(s) failed (%s); retry %d/%d in %.1fs", self.name,
                               len(batch), type(exc).__name__, attempt, attempts - 1, wait_s)
                self.stop.wait(wait_s)  # a stopping pipeline spends the retries without waiting
            else:
                self._failing = False
                return None
        raise AssertionError("unreachable")


async def _maybe_await(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result
