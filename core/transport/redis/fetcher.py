"""The reading side of a Redis queue in this process: a fetcher thread reads entries in batches (never more than
the process has instances free for, core/transport/redis/leases.py), claims the ones a dead consumer held longer
than visibility_timeout_s, renews the leases of the ones in hand, dead-letters as poison an entry delivered
max_deliveries times, nudges instances holding a batch when nothing new will come, and hands out DONE once the
queue has ended (core/transport/redis/ends.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from core.base import codec
from core.transport.base import NUDGE, Delivery
from core.transport.local import LocalQueue
from core.transport.redis.client import RedisLost
from core.transport.redis.leases import Leases
from core.transport.redis.settle import Settler
from core.transport.redis.stream import Stream, fields, text

logger = logging.getLogger(__name__)

# How long one read waits for entries; the fetcher looks at the end, claims and leases between reads. A read
# returns as soon as an entry comes, so the wait only delays seeing the end (and nudging a held batch): 20 ms
# while this process holds entries or they just came (the end follows them closely), doubling while it holds
# none and none come, to 500 ms for an idle queue.
BLOCK_MS = (20, 500)
CLAIM_EVERY_S = 1.0
REJECT_TIMEOUT_S = 30.0  # a solo run's closed queue is read to its end within this
NUDGE_EVERY_S = 1.0


class FetchedQueue(Protocol):
    """What the fetcher needs of its queue (core.transport.redis.queue.RedisQueue): its state and callbacks."""

    closed: bool
    on_reject: Callable[[Any], None]
    on_dead: Callable[[Any, str, str], None]
    ended: Callable[[], bool]
    no_more_new: Callable[[], bool]

    def close(self) -> int:
        """Stop reading."""


class Fetcher:
    """Reads a queue's stream for this process's instances into `buffer`, from start() to shutdown()."""

    def __init__(
        self,
        queue: FetchedQueue,
        stream: Stream,
        *,
        leases: Leases,
        settler: Settler,
        buffer: LocalQueue,
        solo: bool,
        max_deliveries: int,
    ) -> None:
        self.queue = queue
        self.stream = stream
        self.leases = leases
        self.settler = settler
        self.buffer = buffer  # entries fetched for this process's instances
        self.solo = solo
        self.max_deliveries = max_deliveries
        #: Entries read for the first time (in a solo run, what vanishes with the run's keys is what this
        #: process added less these: RedisQueue.qsize).
        self.read_new = 0
        #: The payloads read, for a source's input values in a solo run: those never read are known by name
        #: when the run's keys vanish (unread()).
        self.read_payloads: list[str] | None = None
        self._readers = 0
        self._thread: threading.Thread | None = None
        self._read_client: Any = None  # the fetcher's own connection (RedisRun.reader)
        self._rejecting = False

    def start(self, readers: int, prefetch: int) -> None:
        """Read for `readers` local instances, holding at most `prefetch` entries unsettled at a time (a solo
        run's queue closed before this reads it to its end, dead-lettering what it finds)."""
        self.stream.create()
        self._readers = readers
        self.leases.open(prefetch)
        self.settler.start()
        self._thread = threading.Thread(target=self._fetch, name=f"{self.stream.name}-fetcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The queue closed. In a run shared with other processes, what was fetched and not taken goes back to
        the stream for them (a graceful hand-back, not counted toward the poison limit). In a solo run, the
        fetcher goes on to the end of the queue, dead-letters whatever it finds (on_reject), and ends."""
        if self.solo:
            self._rejecting = True
            if self._thread is not None:
                for delivery in self.buffer.freeze():
                    self._reject(delivery)
            self.buffer.close()
            self.leases.wake()
            return
        ids = [delivery.token[0] for delivery in self.buffer.freeze()]
        if ids:
            self.leases.hand_back(ids)
        self.buffer.close()

    def finish(self) -> None:
        """After every instance has ended: close the queue, and in a solo run read what is left (even if the
        run never started reading) to dead-letter it; shutdown() then waits for that."""
        self.queue.close()
        if self._rejecting and self._thread is None:
            try:
                self.start(self._readers or 1, 64)
            except RedisLost:
                pass  # logged when it was lost: what the queue holds stays in Redis

    def shutdown(self) -> None:
        """finish(); wait for the fetcher (a solo run's, until it read the queue to its end); stop the settler."""
        self.finish()
        if self._thread is not None:
            self._thread.join(REJECT_TIMEOUT_S if self._rejecting else BLOCK_MS[1] / 1000 * 4)
        self.settler.close()

    def unread(self, items: list[Any]) -> list[Any]:
        """Of `items` (what was written to this queue), those this fetcher never read (see read_payloads)."""
        left = list(self.read_payloads or ())
        unread = []
        for item in items:
            payload = codec.dumps(item)
            if payload in left:
                left.remove(payload)
            else:
                unread.append(item)
        return unread

    def _fetch(self) -> None:
        last_claim = last_renew = last_nudge = 0.0
        block_ms = BLOCK_MS[0]
        queue, leases, run = self.queue, self.leases, self.stream.run
        try:
            self._read_client = run.reader()
            run.register_reader(self.stream.name, self._read_client)
            while not queue.closed or self._rejecting:
                free = leases.slots(BLOCK_MS[1] / 1000)
                now = time.monotonic()
                if free and now - last_claim >= CLAIM_EVERY_S:
                    claimed = leases.claim(free)
                    # A full claim means more may be waiting: they are the oldest entries (their owner
                    # died), so they go before new ones, at the next free slot rather than a second later.
                    last_claim = 0.0 if len(claimed) >= free else now
                    self._take(claimed, claimed=True)
                    continue
                if now - last_renew >= self.stream.visibility_timeout_s / 3:
                    last_renew = now
                    leases.renew()
                if free:
                    entries = run.call(self._reader(run.process_id, free, block_ms))
                    if entries:
                        block_ms = BLOCK_MS[0]
                        self._take([(entry_id, entry, 1) for entry_id, entry in entries], claimed=False)
                        if len(entries) == free:
                            leases.grow()
                        continue
                    block_ms = BLOCK_MS[0] if leases.holding() else min(block_ms * 2, BLOCK_MS[1])
                # A read found nothing (it waited block_ms, or was woken: an end came somewhere): the end?
                holding = leases.holding()
                if not holding and queue.ended():
                    if not self._rejecting:
                        self.buffer.put_done(self._readers)
                    run.wake_readers()  # the groups reading from this queue end: their readers may too
                    return
                if holding and not self.buffer.qsize() and now - last_nudge >= NUDGE_EVERY_S and queue.no_more_new():
                    # Nothing new will come, yet entries are held here (a batching sink's batch, which it
                    # would only write at DONE): wake each instance as if it had waited its idle time.
                    last_nudge = now
                    self.buffer.preload([NUDGE] * self._readers)
        except RedisLost:
            self.buffer.put_done(self._readers)  # the run is ending (RedisRun.on_lost stops it)
        except Exception as exc:  # noqa: BLE001 - a refused command (out of memory, say): the run cannot go on
            logger.exception("%s: reading the queue failed", self.stream.name)
            run.lose(
                run.vanished()
                or RedisLost(f"Redis at {run.describe()} refused the run's commands: {type(exc).__name__}: {exc}")
            )
            self.buffer.put_done(self._readers)
        finally:
            if self._read_client is not None:
                self._read_client.close()

    def _reader(self, consumer: str, count: int, block_ms: int) -> Callable[[], list[tuple]]:
        """One read of new entries, for run.call. A try that is retried may have been delivered entries whose
        reply the lost connection took (a server restarting, say): they are pending here, unseen, so the
        retry first takes those back (this consumer's own pending entries not in hand), instead of leaving
        them to be claimed only once they idle past visibility_timeout_s."""
        tries = [0]
        stream = self.stream

        def read() -> list[tuple]:
            tries[0] += 1
            if tries[0] > 1:
                stream.run.register_reader(stream.name, self._read_client)  # a new connection: a new client id
                held = set(self.leases.ids())  # before the read: an entry settled meanwhile is not pending
                reply = self._read_client.xreadgroup(stream.group, consumer, {stream.key: "0"})
                unseen = [
                    (entry_id, entry)
                    for entry_id, entry in (reply[0][1] if reply else [])
                    if entry and text(entry_id) not in held
                ]
                if unseen:
                    return unseen
            reply = self._read_client.xreadgroup(stream.group, consumer, {stream.key: ">"}, count=count, block=block_ms)
            return reply[0][1] if reply else []

        return read

    def _take(self, entries: list[tuple], *, claimed: bool) -> None:
        """Entries now ours: decoded into deliveries for the instances, or dead-lettered (undecodable, poison)."""
        taken = []
        if not claimed:
            self.read_new += len(entries)
        for entry_id, entry, delivered in entries:
            data = fields(entry)
            try:
                # Not written by a runner, it may say anything: a negative count must not put off the poison
                # limit (its data is checked below like any other).
                prior = max(int(data.get("n", 0) or 0), 0)
            except ValueError:
                prior = 0
            count = prior + int(delivered)  # deliveries so far, this one included
            if self.read_payloads is not None and not claimed and "d" in data:
                self.read_payloads.append(data["d"])
            taken.append((Delivery(None, (text(entry_id), count)), data, count))
        self.leases.add([delivery for delivery, _, _ in taken])
        deliveries = [delivery for delivery, data, count in taken if self._decoded(delivery, data, count, claimed)]
        if deliveries and self._rejecting:
            for delivery in deliveries:
                self._reject(delivery)
        elif deliveries:
            self.buffer.preload(deliveries)

    def _decoded(self, delivery: Delivery, data: dict[str, Any], delivered: int, claimed: bool) -> bool:
        """Give `delivery` its item; False when the entry was dead-lettered instead (undecodable, poison)."""
        try:
            delivery.item = codec.loads(data["d"])
        except Exception as exc:  # noqa: BLE001 - any entry that cannot be read is data, never fatal here
            delivery.item = data.get("d")
            error = f"cannot be decoded ({type(exc).__name__}: {exc}); not run"
            if self.settler.dead(delivery, error, kind="failed"):
                self.queue.on_dead(delivery.item, error, "failed")
            return False
        if delivered > self.max_deliveries:
            error = (
                f"poison: delivered {delivered - 1} times (crashes included) without being "
                f"settled; max_deliveries is {self.max_deliveries}"
            )
            if self.settler.dead(delivery, error, kind="poison"):
                self.queue.on_dead(delivery.item, error, "poison")
            return False
        if claimed:
            logger.warning(
                "%s: claimed %s from a consumer that held it past visibility_timeout_s=%g (delivery %d)",
                self.stream.name,
                delivery.token[0],
                self.stream.visibility_timeout_s,
                delivered,
            )
        return True

    def _reject(self, delivery: Delivery) -> None:
        """A solo run's queue after its readers stopped: dead-letter the entry, as a closed local queue does."""
        try:
            ours = self.settler.dead(
                delivery, "not processed: the queue was closed (pipeline stopping or group ended)", kind="stopping"
            )
        except RedisLost:
            ours = True  # recorded here only: it stays pending in Redis, in a run no other process joins
        if ours:
            self.queue.on_reject(delivery.item)
