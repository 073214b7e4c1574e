"""One worker process's books, kept in the parent (core/modes/unit.py): the items sent to it and not settled,
by number (seq), and how each was settled, recorded once: as the process reports (core/modes/unit_reports.py)
or by a forced exit (give_up), never both. Which of them its instances had in hand is in the slots it shares
with the parent (core/modes/child.py Slots)."""

from __future__ import annotations

import threading
from typing import Any

from core.base.errors import Returned
from core.run.ledger import Counts
from core.transport.base import NUDGE, Delivery, notify

WINDOW_MAX = 4096  # items sent and not yet settled, per worker process


class UnitBooks:
    """The items a worker process was sent and not settled (by seq), those on their way to it, and its ledger
    (`counts`); `window` is how many may be unsettled at a time."""

    def __init__(self, group: Any, exits: Any, *, window: int, slots: Any) -> None:
        self.group = group
        self.exits = exits  # how the items leave: core.run.exits / core.run.redis_exits
        self.counts = Counts()
        self.window = window
        self.slots = slots  # a multiprocessing RawArray('q'): the seqs its instances hold, -1 where free
        self.finished = False  # the unit is over: nothing more is sent to it
        self.given_up = False  # a forced exit recorded what it held: nothing it reports is recorded
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        # Recording an item (its dead letter, its counts) and giving up at a forced exit exclude each other, so
        # that each item is recorded once; never held while outputs wait for room downstream.
        self._recording = threading.RLock()
        self._outstanding: dict[int, Delivery] = {}  # seq -> delivery: sent, not settled
        self._transit: list[Any] = []  # taken from the group's input by the feeder, not yet numbered and sent
        self._next_seq = 0

    def in_hand(self) -> list[Delivery]:
        """Items sent to the process and not settled, and those on their way to it."""
        with self._lock:
            return list(self._outstanding.values()) + _deliveries(self._transit)

    def give_up(self) -> list[Delivery]:
        """For a forced exit: the items sent to the process and not settled, which the exit records; from now
        on nothing the process reports is recorded (an item it finishes after this may have been completed)."""
        with self._recording, self._lock:
            self.given_up = True
            transit = _deliveries(self._transit)
            self.counts.received += len(transit)  # taken from the group's input: received, as sent ones are
            left = list(self._outstanding.values()) + transit
            self._outstanding.clear()
            self._transit = []
            self._room.notify_all()
        return left

    # --- the feeder's side ----------------------------------------------------------------------------

    def wait_for_room(self) -> int:
        """How many more items may be sent, once any may (0 when the unit is over)."""
        with self._lock:
            while len(self._outstanding) >= self.window and not self.finished:
                self._room.wait()
            return self.window - len(self._outstanding)

    def in_transit(self, items: list[Any]) -> None:
        """Under the input queue's lock, as the feeder takes items: on their way, in this unit's hand."""
        self._transit = items

    def take_transit(self) -> list[Delivery]:
        """The items the feeder took, as deliveries, now to be sent (or given back)."""
        with self._lock:
            deliveries, self._transit = _deliveries(self._transit), []
        return deliveries

    def number(self, deliveries: list[Delivery]) -> int:
        """Number the items about to be sent and keep them as outstanding; the first one's seq."""
        with self._lock:
            first = self._next_seq
            self._next_seq += len(deliveries)
            self.counts.received += len(deliveries)
            self._outstanding.update(enumerate(deliveries, first))
        return first

    # --- settling, as the process reports ------------------------------------------------------------

    def delivery(self, seq: int) -> Delivery | None:
        """The outstanding delivery `seq`; None once it is settled (or given up)."""
        with self._lock:
            return self._outstanding.get(seq)

    def emitted(self, emits: list[tuple[int, list[Any], bool]], errors: list[BaseException | None]) -> None:
        """Count the (seq, outputs, final) whose outputs went on (error None); a final one is settled."""
        with self._recording, self._lock:
            if self.given_up:
                return
            for (seq, outputs, final), error in zip(emits, errors, strict=True):
                if error is None:
                    self.counts.emitted += len(outputs)
                    if final:
                        self.counts.processed += 1
                        self._settled(seq)

    def stored(self, seqs: list[int]) -> None:
        """A batch of these items was written: settled with their transport and counted."""
        with self._recording:
            if self.given_up:
                return
            self.exits.stored([d for seq in seqs if (d := self.delivery(seq)) is not None])
            with self._lock:
                self.counts.stored += len(seqs)
                self.counts.processed += len(seqs)
                for seq in seqs:
                    self._settled(seq)

    def dead(self, seq: int, error: str, *, attempts: int, kind: str) -> None:
        """Dead-letter item `seq` (once: an item with two failing parts is dead-lettered once) and settle it."""
        with self._recording:
            if self.given_up:
                return  # a forced exit recorded it
            delivery = self.delivery(seq)
            if delivery is None:
                return  # settled already
            try:
                written = self.exits.dead_letter(delivery, error, attempts=attempts, kind=kind)
            except Returned:  # a Redis entry another consumer owns now: it settles it
                with self._lock:
                    self.counts.returned += 1
                    self._settled(seq)
                return
            with self._lock:
                self.counts.failed += kind == "failed"
                if written:
                    self.counts.dead_lettered += 1
                else:
                    self.counts.unrecorded += 1
                self._settled(seq)

    def _settled(self, seq: int) -> None:
        """Under the lock: the item is done with; its room goes to the next."""
        self._outstanding.pop(seq, None)
        if len(self._outstanding) < self.group.spec.instances and self.window < WINDOW_MAX and self.group.input.qsize():
            self.window *= 2  # the process was about to idle while work waits: send it more at a time
        notify(self._room)

    # --- when the process ends ------------------------------------------------------------------------

    def split(self) -> tuple[list[int], list[int]]:
        """The outstanding seqs the process's instances were working on (in its slots), and the others. Read
        once it is dead: nothing changes the slots then."""
        with self._lock:
            held = set(self.slots) & self._outstanding.keys()
            others = self._outstanding.keys() - held
        return sorted(held), sorted(others)

    def waiting(self) -> list[tuple[int, Delivery]]:
        """The outstanding items by seq, in order (to be sent to a replacement process)."""
        with self._lock:
            return sorted(self._outstanding.items())

    def take_back(self, seqs: list[int]) -> list[Delivery]:
        """These outstanding items are no longer this unit's (they go back to the group's input): not received."""
        with self._lock:
            left = [self._outstanding.pop(seq) for seq in seqs]
            self.counts.received -= len(left)
        return left

    def end(self, why_left: str) -> None:
        """The unit is over: what it still holds is dead-lettered, as crashed if an instance held it."""
        held, untaken = self.split()
        for seq in held:  # as in one process: held by a crashed instance, or merely queued for it
            self.dead(seq, f"crashed: {why_left}", attempts=1, kind="crashed")
        for seq in untaken:
            self.dead(seq, f"not processed: {why_left}", attempts=0, kind="stopping")
        with self._lock:
            self.finished = True
            self._room.notify_all()


def _deliveries(items: list[Any]) -> list[Delivery]:
    """The feeder's items as deliveries (a Redis queue hands out deliveries already; a nudge is no item)."""
    return [item if isinstance(item, Delivery) else Delivery(item) for item in items if item is not NUDGE]
