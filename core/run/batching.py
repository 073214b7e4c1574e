"""A batching sink's side of the loop (core.run.loop.Instance): items held until their batch is written, retried
with backoff when the failure is transient, split in halves until the bad ones are alone when it is their
data, and dead-lettered when nothing more can be done; nothing held goes unrecorded. A worker that flushes a
buffer of its own (Worker.flush) is held the same way: its batch is what it processed since its last flush().
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from core.api.worker import BatchWorker, holds
from core.transport.base import Delivery

logger = logging.getLogger(__name__)


class Hand(Protocol):
    """What a batch needs of the items its instance holds (core.run.hand.Hand)."""

    name: str

    def in_hand(self) -> list[Delivery]:
        """Deliveries taken and not yet settled."""

    def stored(self, deliveries: list[Delivery]) -> None:
        """These were written: settle and count them."""

    def fail(
        self, delivery: Delivery, exc: BaseException, *, log: bool = True, sent: int = 0, during: str = ""
    ) -> None:
        """Dead-letter one delivery with `exc`."""


class Batch:
    """The batch of one instance of a BatchWorker (or of a worker that flushes): filled by the loop, written (or
    flushed) on size, age, idleness or DONE."""

    def __init__(
        self, hand: Hand, worker: Any, stop: threading.Event, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.hand = hand
        self.worker: BatchWorker = worker  # a BatchWorker, or a Worker that defines flush()
        self.stop = stop
        self.size = holds(worker)
        self.writes = isinstance(worker, BatchWorker)  # write_batch(); else the worker's own flush()
        self._clock = clock
        self._items: list[Delivery] = []
        self._due = 0.0
        self._failing = False  # the last batch spent its retries: try the next ones once each

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, delivery: Delivery) -> bool:
        """Hold one more item; True when the batch is to be written now: it is full, or old enough (then the
        loop first fills it with what is queued by now, see Instance._top_up)."""
        if not self._items:
            self._due = self._clock() + self.worker.flush_interval_s
        self._items.append(delivery)
        return self.full() or self._clock() >= self._due

    def full(self) -> bool:
        """True once the batch holds its size (batch_size, flush_every) of items."""
        return len(self._items) >= self.size

    def room(self) -> int:
        """How many more items the batch takes before it is written."""
        return max(self.size - len(self._items), 1)

    def due_in_s(self) -> float:
        """Seconds until the batch is old enough to write."""
        return max(self._due - self._clock(), 0.0)

    def clear(self) -> None:
        """Forget the batch (its items were recorded elsewhere: the instance ended)."""
        self._items = []

    def flush(self) -> None:
        """Write the held batch; whatever cannot be written is dead-lettered, even if the writing itself
        raises where it should not (in is_transient, say). For a worker that flushes a buffer of its own:
        worker.flush(), then the items it covered are settled, or dead-lettered if it raised."""
        batch, self._items = self._items, []
        if not batch:
            return
        if not self.writes:
            try:
                self.worker.flush()
            except Exception as exc:  # noqa: BLE001 - the items it covered are recorded, then the loop goes on
                self._flush_failed(batch, exc)
            else:
                self.hand.stored(batch)
            return
        try:
            self._write(batch)
        except Exception as exc:  # noqa: BLE001 - the batch is recorded, then the loop goes on
            logger.exception("%s: writing a batch failed unexpectedly", self.hand.name)
            held = {id(d) for d in self.hand.in_hand()}
            for delivery in batch:
                if id(delivery) in held:
                    self.hand.fail(delivery, exc, log=False)

    async def aflush(self) -> None:
        """flush() for an async worker that flushes (a BatchWorker is never async): its flush() may be async def."""
        batch, self._items = self._items, []
        if not batch:
            return
        try:
            result = self.worker.flush()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001
            self._flush_failed(batch, exc)
        else:
            self.hand.stored(batch)

    def _flush_failed(self, batch: list[Delivery], exc: Exception) -> None:
        logger.error(
            "%s: flush() failed, dead-lettering the %d item(s) it was to write out: %s: %s",
            self.hand.name,
            len(batch),
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        for delivery in batch:
            self.hand.fail(delivery, exc, log=False, during="flush()")

    def _write(self, batch: list[Delivery]) -> None:
        error = self._write_with_retries(batch)
        if error is None:
            self.hand.stored(batch)
        elif not self.worker.is_transient(error) and len(batch) > 1:
            half = len(batch) // 2
            self._write(batch[:half])
            self._write(batch[half:])
        else:
            logger.error(
                "%s: %d item(s) could not be written, dead-lettering them: %s: %s",
                self.hand.name,
                len(batch),
                type(error).__name__,
                error,
            )
            for delivery in batch:
                self.hand.fail(delivery, error, log=False)

    def _write_with_retries(self, batch: list[Delivery]) -> BaseException | None:
        worker = self.worker
        attempts = 1 if self._failing else worker.write_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                worker.write_batch([delivery.item for delivery in batch])
            except Exception as exc:  # noqa: BLE001 - retried, split or dead-lettered by the caller
                exc.attempts = attempt  # type: ignore[attr-defined]  # the dead letter's `attempts`
                if not worker.is_transient(exc):
                    return exc
                if attempt == attempts:
                    self._failing = True
                    return exc
                wait_s = min(worker.retry_backoff_s * 2 ** (attempt - 1), worker.retry_backoff_max_s)
                logger.warning(
                    "%s: writing %d item(s) failed (%s); retry %d/%d in %.1fs",
                    self.hand.name,
                    len(batch),
                    type(exc).__name__,
                    attempt,
                    attempts - 1,
                    wait_s,
                )
                self.stop.wait(wait_s)  # a stopping pipeline spends the retries without waiting
            else:
                self._failing = False
                return None
        raise AssertionError("unreachable")
