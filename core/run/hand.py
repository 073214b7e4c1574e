"""What one instance holds, and how each item it took is recorded: exactly once, by the instance (emitted,
stored, returned, dead-lettered) or by a forced exit (give_up), never both. core.run.loop.Instance drives it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from core.base.errors import ItemError, error_shape
from core.run.ledger import Counts
from core.transport.base import Delivery

if TYPE_CHECKING:
    from core.run.batching import Batch
    from core.run.exits import Exits

logger = logging.getLogger(__name__)

TRACEBACKS_PER_ERROR = 3  # each distinct error of a group is logged with its traceback this often, then in a line


class ErrorLog:
    """How often each distinct error (its type and shape: core.base.errors.error_shape) was logged in a group, so
    that an error repeated over hundreds of items shows its traceback a few times, then one counted line each."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def seen(self, exc: BaseException, item: Any) -> int:
        """Record one more of `exc` on `item`; how many of that error there have been, this one included."""
        key = f"{type(exc).__name__}: {error_shape(str(exc), item)}"
        with self._lock:
            self._seen[key] = count = self._seen.get(key, 0) + 1
        return count


class Hand:
    """The items an instance holds: the one being processed (`current`), and a batching sink's items until their
    batch is settled or a flushing worker's, processed, until flushed (`held`); `counts` are its ledger."""

    def __init__(
        self, name: str, exits: Exits, *, batching: bool, flushing: bool, errors: ErrorLog | None = None
    ) -> None:
        self.name = name
        self.exits = exits
        self.errors = errors or ErrorLog()
        self.counts = Counts()
        self.batching = batching
        self.flushing = flushing
        self.batch: Batch | None = None  # set by the instance when it has one
        self._current: Delivery | None = None
        self._held: dict[int, Delivery] = {}
        # Settling an item (its counts, its dead letter) and giving up at a forced exit exclude each other: an item
        # is recorded by the instance or by the exit, once. Never held while waiting for room downstream.
        self._settling = threading.Lock()
        self._given_up = False

    def in_hand(self) -> list[Delivery]:
        """Deliveries taken and not yet settled (the batch included), for a forced exit to record.
        Read from another thread: each read below is one step under the GIL, so it sees a whole state."""
        current = self._current
        while True:
            try:
                held = list(self._held.values())
                break
            except RuntimeError:  # changed while read: read again
                continue
        return ([current] if current is not None else []) + [d for d in held if d is not current]

    def take(self, delivery: Delivery) -> None:
        """Under the queue's lock, as the item leaves it: in hand and received, so that a forced exit (which
        freezes the queues first) finds every item in a queue or in a hand."""
        self.counts.received += 1
        if self.batching:
            self._held[id(delivery)] = delivery
        else:
            self._current = delivery

    def give_up(self) -> list[Delivery]:
        """For a forced exit: what is held now, which the exit records; from now on nothing is recorded here."""
        with self._settling:
            self._given_up = True
            left = self.in_hand()
            self._current = None
            self._held.clear()
        return left

    def emitted(self, delivery: Delivery) -> bool:
        """The item was processed and its outputs sent; True when a flushing worker's items are now to be flushed
        (the item itself is held until then)."""
        with self._settling:
            if self._given_up:
                return False
            if self.flushing and self.batch is not None:
                self._held[id(delivery)] = delivery  # in hand still, now as held (read by in_hand from any thread)
                self._current = None
                return self.batch.add(delivery)
            self.counts.processed += 1
            self._release(delivery)
            return False

    def stored(self, deliveries: list[Delivery]) -> None:
        """A batch was written (or a flush() covered these): settle and count them."""
        with self._settling:
            if self._given_up:
                return
            self.exits.stored(deliveries)
            self.counts.stored += len(deliveries)
            self.counts.processed += len(deliveries)
            for delivery in deliveries:
                self._release(delivery)

    def returned(self, delivery: Delivery) -> None:
        with self._settling:
            if not self._given_up:
                self.counts.returned += 1
                self._release(delivery)

    def fail(
        self, delivery: Delivery, exc: BaseException, *, log: bool = True, sent: int = 0, during: str = ""
    ) -> None:
        """Dead-letter the item with `exc` (logged unless `log` is False; `sent` of its outputs went on; `during`:
        what raised it, when not process())."""
        if log:
            self._log(delivery, exc)
        error = f"{during} failed: " * bool(during) + f"{type(exc).__name__}: {exc}"
        if sent:
            error += f" (after {sent} of its outputs had gone on)"
        self.dead_letter(delivery, error, attempts=getattr(exc, "attempts", 1), failed=True)

    def _log(self, delivery: Delivery, exc: BaseException) -> None:
        """One line per failed item; the traceback of an unexpected error only the first few times it is seen."""
        if isinstance(exc, ItemError):  # a known reason: one line, never a traceback
            logger.warning("%s failed on %r: %s", self.name, delivery.item, exc)
            return
        count = self.errors.seen(exc, delivery.item)
        if count <= TRACEBACKS_PER_ERROR:
            logger.warning("%s failed on %r: %s: %s", self.name, delivery.item, type(exc).__name__, exc, exc_info=exc)
        else:
            logger.warning(
                "%s failed on %r: %s: %s (the same error %d times so far; its traceback was logged the first %d)",
                self.name,
                delivery.item,
                type(exc).__name__,
                exc,
                count,
                TRACEBACKS_PER_ERROR,
            )

    def dead_letter(
        self, delivery: Delivery, error: str, *, attempts: int = 1, kind: str = "failed", failed: bool = False
    ) -> None:
        with self._settling:
            if self._given_up:
                return
            self.counts.failed += failed
            if self.exits.dead_letter(delivery, error, attempts=attempts, kind=kind):
                self.counts.dead_lettered += 1
            else:
                self.counts.unrecorded += 1
            self._release(delivery)

    def _release(self, delivery: Delivery) -> None:
        if delivery is self._current:
            self._current = None
        else:
            self._held.pop(id(delivery), None)
