"""Feeding one worker process (core/modes/unit.py): a thread in the parent takes items from the group's input
queue and sends them down the process's pipe, in batches, at most the unit's window unsettled at a time; the
end of the input (DONE) and a Redis queue's nudge ("nothing new will come for now") follow them."""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable
from typing import Any

from core.modes.unit_books import UnitBooks
from core.transport.base import NUDGE, Delivery, Empty

logger = logging.getLogger(__name__)

BATCH_MAX = 1024  # items per message to a worker process


class Feeder:
    """The thread that feeds a unit's process: `send` puts bytes on its pipe, under `send_lock` (held while
    a process is replaced, so nothing is sent meanwhile); `done_sent` once the input's DONE went."""

    def __init__(
        self, name: str, books: UnitBooks, inbox: Any, *, send: Callable[[bytes], None], send_lock: threading.Lock
    ) -> None:
        self.name = name
        self.books = books
        self.inbox = inbox  # the group's input queue
        self.done_sent = False
        self._send = send
        self._send_lock = send_lock
        self.thread = threading.Thread(target=self._feed, name=f"{name}-feeder", daemon=True)

    def _feed(self) -> None:
        books, inbox = self.books, self.inbox
        while True:
            room = books.wait_for_room()
            if books.finished:
                return
            try:
                items, done = inbox.get_items(min(room, BATCH_MAX), timeout_s=0.5, hold=books.in_transit)
            except Empty:
                continue
            nudged = any(item is NUDGE for item in items)  # a Redis queue's "nothing new will come"
            with self._send_lock:  # the unit cannot end while this holds
                deliveries = books.take_transit()
                if books.given_up:
                    return  # a forced exit recorded them
                if books.finished:  # ended meanwhile: what it took goes back for the group's other processes
                    inbox.give_back(deliveries)
                    if done:
                        inbox.put_done(1)
                    return
                if deliveries:
                    self._send_items(deliveries)
                if nudged:  # its instances holding a batch write it now
                    self._send(pickle.dumps(("nudge",)))
                if done:
                    self.done_sent = True
                    self._send(pickle.dumps(("done",)))
                    return

    def _send_items(self, deliveries: list[Delivery]) -> None:
        """Under the send lock: number the items, keep them as outstanding, send them."""
        first = self.books.number(deliveries)
        items = [delivery.item for delivery in deliveries]
        try:
            data = pickle.dumps(("items", first, items), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - find the items that cannot be pickled: each is that item's error
            pairs = [(seq, item) for seq, item in enumerate(items, first) if self._picklable(seq, item)]
            data = pickle.dumps(("pairs", pairs), protocol=pickle.HIGHEST_PROTOCOL)
        self._send(data)

    def _picklable(self, seq: int, item: Any) -> bool:
        try:
            pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            logger.warning(
                "%s: %r cannot be sent to a worker process: %s: %s", self.name, item, type(exc).__name__, exc
            )
            self.books.dead(
                seq,
                f"cannot be sent to a worker process (pickle: {type(exc).__name__}: {exc})",
                attempts=1,
                kind="failed",
            )
            return False
        return True
