"""What a worker process reports to the parent, taken in there (core/modes/unit.py reads the pipe): its items'
outputs, put downstream through the group's exits; items stored, dead-lettered or whose outputs could not be
sent, settled in the unit's books; crashes; log records, logged through the parent's handlers; busy time.
The messages are made in core/modes/outbox.py and core/modes/child.py (ChildExits)."""

from __future__ import annotations

import logging
from typing import Any

from core.modes.unit_books import UnitBooks

logger = logging.getLogger(__name__)

#: What a process reports once an item is finished with (a replacement of a process that sent one is worth it).
FINISHING = ("emit", "stored", "dead", "unsent")


class ChildCrash(Exception):
    """What ended a worker process, or an instance in it, as the parent learned it."""


class Reports:
    """What one unit's worker processes (the current one and those it replaced) reported: taken in, batch by
    batch; `crash` is the first crash, `crashes` how many there were."""

    def __init__(self, name: str, books: UnitBooks, exits: Any) -> None:
        self.name = name
        self.books = books
        self.exits = exits  # how the items leave: core.run.exits / core.run.redis_exits
        self.crash: BaseException | None = None
        self.crashes = 0
        self.progress = True  # the current process finished an item (a replacement is then worth it)
        self.bye = False  # the current process said goodbye: it is exiting, having finished
        self._busy_before = (0.0, 0.0)  # busy and blocked seconds of the processes this unit had before

    def new_process(self) -> None:
        """A process starts: it has said nothing yet, and its busy time adds to its predecessors'."""
        self._busy_before = (self.books.counts.busy_s, self.books.counts.blocked_s)
        self.progress = False
        self.bye = False

    def crashed(self, text: str) -> None:
        """An instance of the process crashed, or the process died: counted, and the first is the unit's crash."""
        self.crashes += 1
        self.crash = self.crash or ChildCrash(text)

    def handle_batch(self, messages: list[tuple]) -> None:
        """Outputs go on through the group's exits (in one go per queue where they allow), then the books of
        every item settled in the batch."""
        books = self.books
        if books.given_up:
            return  # a forced exit recorded what the process held
        # An item that failed already (a part of it an output queue refused) is over: what else it sent is dropped.
        emits = [
            (message[1], delivery, message[2], message[0] == "emit")
            for message in messages
            if message[0] in ("emit", "part") and (delivery := books.delivery(message[1])) is not None
        ]
        if any(message[0] in FINISHING for message in messages):
            self.progress = True
        failed = self.exits.emit_many([(delivery, outputs, final) for _, delivery, outputs, final in emits])
        books.emitted([(seq, outputs, final) for seq, _, outputs, final in emits], failed)
        for (seq, _delivery, _outputs, _final), error in zip(emits, failed, strict=True):
            if error is not None:  # e.g. an output Redis cannot take as JSON: that item's error (once)
                books.dead(seq, f"{type(error).__name__}: {error}", attempts=1, kind="failed")
        for message in messages:
            if message[0] not in ("emit", "part"):
                self._handle(message)

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "stored":
            self.books.stored(message[1])
        elif kind == "dead":
            _, seq, error, attempts, dead_kind = message
            self.books.dead(seq, error, attempts=attempts, kind=dead_kind)
        elif kind == "unsent":  # an output of the item could not be pickled in the worker process
            _, seq, error = message
            delivery = self.books.delivery(seq)
            if delivery is not None:
                logger.warning("%s failed on %r: %s", self.name, delivery.item, error)
                self.books.dead(seq, error, attempts=1, kind="failed")
        elif kind == "crash":
            _, name, text = message
            logger.error("%s ended with a crash: %s", name, text)
            self.crashed(f"{name}: {text}")
        elif kind == "log":
            self._log(*message[1:])
        elif kind == "busy":
            self.books.counts.busy_s = self._busy_before[0] + message[1]
            self.books.counts.blocked_s = self._busy_before[1] + message[2]
        elif kind == "bye":
            self.bye = True

    def _log(self, level: int, name: str, thread: str, text: str, exc_text: str | None) -> None:
        record = logging.LogRecord(name, level, __file__, 0, text, None, None)
        record.threadName, record.processName = thread, self.name
        record.exc_text = exc_text
        logging.getLogger(name).handle(record)
