"""The entries a Redis queue's fetcher holds for this process's instances, unsettled: how many more it may read
(its read-ahead, which grows for a fast stage), and their leases in Redis: renewed while held, claimed from a
consumer that held them too long, handed back when this process stops reading.
"""

from __future__ import annotations

import logging
import threading
import time

from core.transport.base import Delivery, notify
from core.transport.redis.client import RedisLost
from core.transport.redis.stream import Stream

logger = logging.getLogger(__name__)

PREFETCH_MAX = 2048
FAST_HOLD_S = 0.005  # items held less than this on average make a stage fast enough to read further ahead


class Leases:
    """The entries this process holds of one stream, and what it may still read."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._free = 0  # items this process may still take before one is settled
        self._prefetch = 0  # items it may hold unsettled at most: grows for a fast stage (grow)
        self._fetched_at: dict[str, float] = {}
        self._hold_s = 1.0  # how long an item is held, on average (until known, taken for a slow stage)
        #: An instance found nothing fetched since the last read (set by the queue's get).
        self.starved = False
        self._in_hand: dict[str, Delivery] = {}  # entry id -> delivery: fetched here, not settled

    def open(self, prefetch: int) -> None:
        """Hold at most `prefetch` entries unsettled at first."""
        self._free = self._prefetch = prefetch

    def slots(self, wait_s: float) -> int:
        """How many more entries may be read now; if none, after waiting up to `wait_s` for one to be settled."""
        with self._lock:
            if not self._free:
                self._room.wait(wait_s)
            return self._free

    def wake(self) -> None:
        """Cut a wait in slots() short (the queue closed)."""
        with self._lock:
            self._room.notify()

    def add(self, deliveries: list[Delivery]) -> None:
        """Entries just read or claimed: held here from now on."""
        now = time.monotonic()
        with self._lock:
            for delivery in deliveries:
                self._in_hand[delivery.token[0]] = delivery
                self._fetched_at[delivery.token[0]] = now
            self._free -= len(deliveries)

    def settled(self, entry_ids: list[str]) -> None:
        """Entries are settled (or given up): room for as many more."""
        now = time.monotonic()
        with self._lock:
            for entry_id in entry_ids:
                if self._in_hand.pop(entry_id, None) is not None:
                    self._free += 1
                    held_s = now - self._fetched_at.pop(entry_id, now)
                    self._hold_s += (held_s - self._hold_s) / 16  # a moving average of how long items are held
            notify(self._room)

    def grow(self) -> None:
        """A read filled every free slot while instances waited, and items are done with in milliseconds:
        a fast stage, held back by round trips. Read ahead twice as far (up to PREFETCH_MAX). A slow stage
        keeps a small read-ahead, so its items stay spread over the processes that read the queue."""
        with self._lock:
            if self.starved and self._hold_s < FAST_HOLD_S and self._prefetch < PREFETCH_MAX:
                self._free += self._prefetch
                self._prefetch *= 2
            self.starved = False

    def ids(self) -> list[str]:
        """The entries held now."""
        with self._lock:
            return list(self._in_hand)

    def holding(self) -> bool:
        """Whether any entry is held."""
        with self._lock:
            return bool(self._in_hand)

    def renew(self) -> None:
        """Renew the lease of every entry held, so that no other consumer claims them."""
        ids = self.ids()
        if ids:
            self.stream.script("renew", [self.stream.key], [self.stream.group, self.stream.run.process_id, *ids])

    def claim(self, count: int) -> list[tuple]:
        """Up to `count` entries another consumer held past the visibility timeout, now this one's."""
        stream = self.stream
        idle_ms = int(stream.visibility_timeout_s * 1000)
        return stream.script(
            "claim", [stream.key], [stream.group, stream.run.process_id, idle_ms, count, stream.stage_key("")]
        )

    def hand_back(self, ids: list[str]) -> None:
        """Give entries fetched and never taken back to the stream for the group's other processes; they are
        no longer held here (and make no room: this process reads no more)."""
        self._hand_back(ids)
        with self._lock:
            for entry_id in ids:
                self._in_hand.pop(entry_id, None)

    def _hand_back(self, ids: list[str]) -> None:
        """If the server refuses a hand-back (out of memory: it writes each entry again), make the entries
        claimable at once instead (RELEASE writes nothing), so that no one waits out the visibility timeout."""
        stream = self.stream
        args = [stream.group, stream.run.process_id]
        try:
            stream.script("hand_back", [stream.key], [*args, *ids])
            return
        except RedisLost:
            return  # they stay pending: another process claims them after the visibility timeout
        except Exception as exc:  # noqa: BLE001 - refused by the server: release them instead
            logger.warning(
                "%s: handing %d entries back failed (%s); releasing them to be claimed at once",
                stream.name,
                len(ids),
                exc,
            )
        idle_ms = int(stream.visibility_timeout_s * 1000)
        try:
            stream.script("release", [stream.key], [*args, idle_ms, *ids])
        except RedisLost:
            pass
        except Exception:  # noqa: BLE001 - they wait out the visibility timeout: said, not fatal
            logger.exception(
                "%s: releasing %d entries failed; they are claimed after visibility_timeout_s=%g",
                stream.name,
                len(ids),
                stream.visibility_timeout_s,
            )
