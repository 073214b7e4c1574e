"""The Redis transport: a queue is a Redis stream with one consumer group (its reader group), read by every
process that runs that group, on any machine.

An item taken is acknowledged only once it is settled, by the scripts of core/transport/redis/scripts.py, which check
that this consumer still owns the entry. A fetcher thread per queue and process reads entries in batches
(never more than the process has instances free for), renews the lease of the ones in hand, claims the ones
a dead consumer held longer than visibility_timeout_s, dead-letters as poison an entry delivered
max_deliveries times, and hands out DONE once the queue has ended: every producer group has ended, every
entry was delivered and none is pending (core/transport/redis/ends.py).

Items are JSON (core.base.codec), never pickles: whoever can write to Redis cannot run code here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from core.base import codec
from core.base.errors import ItemError
from core.transport.base import DONE, NUDGE, Delivery, Empty, Hold, notify
from core.transport.local import LocalQueue
from core.transport.redis.client import RedisLost, RedisRun
from core.transport.redis.scripts import CLAIM, DEAD, FILL_ONCE, HAND_BACK, PUT, RELEASE, RENEW, SETTLE, STAGE
from core.transport.redis.settle import SIZE_REFUSALS, Encoder, Settler

logger = logging.getLogger(__name__)

# How long one read waits for entries; the fetcher looks at the end, claims and leases between reads. A read
# returns as soon as an entry comes, so the wait only delays seeing the end (and nudging a held batch): 20 ms
# while this process holds entries or they just came (the end follows them closely), doubling while it holds
# none and none come, to 500 ms for an idle queue.
BLOCK_MS = (20, 500)
CLAIM_EVERY_S = 1.0
ROOM_WAIT_S = (0.005, 0.2)  # a producer waiting for room polls from 5 ms, backing off to 200 ms
REJECT_TIMEOUT_S = 30.0  # a solo run's closed queue is read to its end within this
NUDGE_EVERY_S = 1.0
PREFETCH_MAX = 2048
FAST_HOLD_S = 0.005  # items held less than this on average make a stage fast enough to read further ahead


class RedisQueue:
    """A named bounded queue in Redis: the queue interface of core.transport.local.LocalQueue over a stream."""

    is_redis = True

    def __init__(
        self,
        name: str,
        maxsize: int,
        run: RedisRun,
        *,
        reader: str,
        solo: bool = False,
        visibility_timeout_s: float = 30.0,
        max_deliveries: int = 5,
    ) -> None:
        self.name = name
        #: The run is this process's alone (no --run-id was given, so no other can join): when this process
        #: stops reading, what is left is dead-lettered as in a local queue. Otherwise others may read on:
        #: what is left stays in Redis, and what this process holds at a forced exit stays pending there.
        self.solo = solo
        self.keeps_unsettled = not solo
        self.maxsize = maxsize
        self.run = run
        self.key = run.key("q", name)
        self.group = reader
        self.visibility_timeout_s = visibility_timeout_s
        self.max_deliveries = max_deliveries
        self.redis = run.redis
        self.scripts = {
            name: self.redis.register_script(text)
            for name, text in (
                ("settle", SETTLE),
                ("dead", DEAD),
                ("hand_back", HAND_BACK),
                ("renew", RENEW),
                ("claim", CLAIM),
                ("fill", FILL_ONCE),
                ("put", PUT),
                ("stage", STAGE),
                ("release", RELEASE),
            )
        }
        self.on_reject: Callable[[Any], None] = lambda item: None
        #: Records an entry the fetcher dead-lettered (undecodable, poison) in the reading group's own books
        #: and dead-letter file, as its Redis dead letter is: (item, error, kind). Set by RedisExits.
        self.on_dead: Callable[[Any, str, str], None] = lambda item, error, kind: None
        self.ended: Callable[[], bool] = lambda: False  # set by the executor (core/transport/redis/ends.py)
        self.no_more_new: Callable[[], bool] = lambda: False  # closed, and every entry delivered
        self.put_count = self.get_count = 0
        self.preloaded = 0  # replayed items put in by the runner (core.transport.local.LocalQueue.preloaded)
        #: Entries this process is known to have added (written and answered) and, of them, read for the first
        #: time: in a solo run, what vanishes with the run's keys is the difference (vanished()).
        self.added = self.read_new = 0
        #: The payloads read, for a source's input values in a solo run: those never read are known by name
        #: when the run's keys vanish (unread()).
        self.read_payloads: list[str] | None = None
        self._closed = False
        self._buffer = LocalQueue(f"{name}.fetched", 1)  # entries fetched for this process's instances
        self._buffer.on_reject = lambda delivery: None
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._free = 0  # items this process may still take before one is settled
        self._prefetch = 0  # items it may hold unsettled at most: grows for a fast stage (_grow)
        self._fetched_at: dict[str, float] = {}
        self._room_seen = 0  # entries that may still be added before the stream's length is asked again
        self._hold_s = 1.0  # how long an item is held, on average (until known, taken for a slow stage)
        self._starved = False  # an instance found nothing fetched since the last read
        self._in_hand: dict[str, Delivery] = {}  # entry id -> delivery: fetched here, not settled
        self._readers = 0
        self._fetcher: threading.Thread | None = None
        self._read_client: Any = None  # the fetcher's own connection (RedisRun.reader)
        self._rejecting = False
        self.settler: Settler | None = None
        #: Writes items as JSON for this queue (shared by the run's exits that write here: core/run/group.py,
        #: core/transport/redis/settle.py), reusing what a check wrote.
        self.encoder = Encoder(run)
        self.on_fetched: Callable[[int], None] = lambda count: None

    # --- setting up ---------------------------------------------------------------------------------

    def create(self) -> None:
        """Make the stream and its consumer group if this is the run's first process to need them."""
        import redis

        try:
            self.run.call(lambda: self.redis.xgroup_create(self.key, self.group, id="0", mkstream=True))
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def fill_once(self, items: list[Any]) -> int:
        """A source's input values, written once for the whole run (other processes find them there)."""
        self.create()
        payloads = [codec.dumps(item) for item in items]
        written = self.run.call(
            lambda: self.scripts["fill"](keys=[self.key, self.run.key("closed", self.name)], args=payloads)
        )
        self.added += int(written)
        return int(written)

    def start_reading(self, readers: int, prefetch: int) -> None:
        """Read for `readers` local instances, holding at most `prefetch` entries unsettled at a time (a solo
        run's queue closed before this reads it to its end, dead-lettering what it finds)."""
        self.create()
        self._readers = readers
        self._free = self._prefetch = prefetch
        self.settler = self.settler or Settler(self)
        self._fetcher = threading.Thread(target=self._fetch, name=f"{self.name}-fetcher", daemon=True)
        self._fetcher.start()

    # --- the queue interface (producer side) --------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def high_water(self) -> int:
        """The most entries this process held fetched and not yet taken."""
        return self._buffer.high_water

    def qsize(self) -> int:
        """Entries this process fetched that no instance took yet (the stream itself is the run's, see
        Distributed.ledger): the local view, cheap enough to sample for the live status. Once the run's keys
        vanished, a solo run's entries that went with them count too: they are lost."""
        return self._buffer.qsize() + self.vanished()

    def vanished(self) -> int:
        """In a solo run whose keys vanished from Redis: the entries this process added and never read (no
        other process reads a solo run's queues, so they are gone). 0 otherwise: in a shared run other
        processes read them too, and only the whole run could tell."""
        return max(self.added - self.read_new, 0) if self.solo and self.run.gone else 0

    def unread(self, items: list[Any]) -> list[Any]:
        """Of `items` (what was written to this queue), those its fetcher never read (see read_payloads)."""
        left = list(self.read_payloads or ())
        unread = []
        for item in items:
            payload = codec.dumps(item)
            if payload in left:
                left.remove(payload)
            else:
                unread.append(item)
        return unread

    def stage_key(self, entry_id: str) -> str:
        """Where a generator's outputs for Redis wait until entry `entry_id` is settled (core/transport/redis/settle.py)."""
        return self.run.key("stage", self.name, entry_id)

    def put(self, item: Any) -> bool:
        self.put_many([item])
        return True

    def put_nowait(self, item: Any) -> bool:
        self.put_many([item])
        return True

    def put_many(self, items: list[Any], *, wait: bool = True) -> float:
        """Add items (waiting while the stream holds maxsize entries); return the seconds spent waiting.
        An item that cannot be written as JSON, or is larger than the server takes, raises ItemError before
        anything is added."""
        return self.put_payloads(self.encoder.encode(items), wait=wait)

    def put_payloads(self, payloads: list[str], *, wait: bool = True) -> float:
        """put_many() of items already written as JSON (core.transport.redis.settle.encode_all). One script call that
        records its call id with the entries, so that a retry after a lost reply does not add them again."""
        if not payloads:
            return 0.0
        waited = self.wait_for_room(len(payloads)) if wait else 0.0
        field, seq = self.run.thread_call_id()
        keys, args = [self.key, self.run.key("calls")], [field, seq, *payloads]

        def recheck() -> None:  # the server may have closed the connection on a payload it takes no more
            self.run.refresh_limits()
            for payload in payloads:
                if len(payload.encode("utf-8")) > self.run.max_bulk_bytes:
                    raise ItemError(
                        f"cannot be written to a Redis queue: larger than the server takes "
                        f"(proto-max-bulk-len {self.run.max_bulk_bytes})"
                    )

        try:
            self.run.call(lambda: self.scripts["put"](keys=keys, args=args), before_retry=recheck)
        except self.run.response_error as exc:
            if any(text in str(exc) for text in SIZE_REFUSALS):
                raise ItemError(f"refused by Redis for its size: {exc}") from None
            raise
        self.put_count += len(payloads)
        self.added += len(payloads)
        return waited

    def _waiting(self) -> int:
        """Entries not yet delivered to any reader: the stream's length less those pending (settled ones
        are deleted from the stream with their acknowledgement)."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xlen(self.key)
            pipe.xinfo_groups(self.key)
            length, groups = pipe.execute()
        pending = sum(int(g["pending"]) for g in groups if _text(g["name"]) == self.group)
        return length - pending

    def preload(self, items: list[Any]) -> int:
        """Items replayed into this queue (beyond maxsize, as for a local queue), counted as preloaded, not put."""
        items = list(items)
        self.put_many(items, wait=False)
        self.put_count -= len(items)
        self.preloaded += len(items)
        return len(items)

    def wait_for_room(self, count: int) -> float:
        """Before adding `count` entries: wait while maxsize entries wait to be read, so a stalled reader
        holds its producers back as a full local queue does. As in a local queue, what readers hold (a
        batching sink's batch, say) is not counted: a batch larger than maxsize must not wait for entries
        that only its writing would free. The count is asked only once the room last seen is used up.
        Return the seconds waited."""
        with self._lock:
            self._room_seen -= count
            if self._room_seen >= 0:
                return 0.0
        waited, pause_s = 0.0, ROOM_WAIT_S[0]
        while (length := self.run.call(self._waiting)) >= self.maxsize:
            started = time.perf_counter()
            time.sleep(pause_s)  # Redis cannot wake us when a reader elsewhere makes room: look again
            waited += time.perf_counter() - started
            pause_s = min(pause_s * 2, ROOM_WAIT_S[1])
        with self._lock:
            self._room_seen = self.maxsize - length - count
        return waited

    def put_done(self, count: int) -> None:
        """Producers in this process ended: their end marks are written by the executor (RedisRun.end_group)."""

    # --- the queue interface (consumer side) --------------------------------------------------------

    def get(self, timeout_s: float | None = None, *, wake_at: int = 1, hold: Hold | None = None) -> Delivery | Any:
        """`wake_at` is not used: entries arrive in reads of many, and an idle stream nudges a batch to flush."""
        if not self._buffer.qsize():
            self._starved = True
        delivery = self._buffer.get(timeout_s, hold=_unwrapping(hold))
        if delivery is not DONE:
            delivery = delivery.item  # the buffer wraps what it holds
            if delivery is NUDGE:
                raise Empty  # nothing new will come: an instance holding a batch flushes it now
            self.get_count += 1
        return delivery

    def get_or_wait(self, loop: Any, hold: Hold | None = None) -> Delivery | Any:
        """get() for an asyncio task (see LocalQueue.get_or_wait)."""
        if not self._buffer.qsize():
            self._starved = True
        delivery = self._buffer.get_or_wait(loop, _unwrapping(hold))
        if delivery is DONE or not isinstance(delivery, Delivery):
            return delivery  # DONE, or a future to wait on
        delivery = delivery.item
        if delivery is NUDGE:
            raise Empty
        self.get_count += 1
        return delivery

    def forget_waiter(self, future: Any) -> None:
        self._buffer.forget_waiter(future)

    def get_items(
        self, max_items: int, timeout_s: float | None = None, hold: Callable[[list[Any]], None] | None = None
    ) -> tuple[list[Any], bool]:
        """For a process group's feeder: Deliveries (their items and entry ids travel together), and NUDGE
        where the queue nudged its readers (the feeder passes that on to its worker process)."""
        deliveries, done = self._buffer.get_items(max_items, timeout_s, hold)
        self.get_count += sum(1 for delivery in deliveries if delivery is not NUDGE)
        return deliveries, done

    def give_back(self, deliveries: list[Delivery]) -> None:
        """Entries taken for a worker process that ended before starting them: back to the fetched buffer
        for the group's other processes (still pending here, so no one else takes them meanwhile)."""
        self._buffer.preload(deliveries)

    def ack(self, delivery: Delivery) -> None:
        """Settled here with its outputs sent elsewhere (a local queue): acknowledged, at least once."""
        self.settler.settle(delivery, None)

    def close(self) -> int:
        """Stop reading. In a run shared with other processes, what was fetched and not taken goes back to
        the stream (a graceful hand-back, not counted toward the poison limit) for them. In a solo run, the
        fetcher goes on to the end of the queue, dead-letters whatever it finds (on_reject), and ends."""
        if self._closed:
            return 0
        self._closed = True
        if self.solo:
            self._rejecting = True
            if self._fetcher is not None:
                for delivery in self._buffer.freeze():
                    self._reject(delivery)
            self._buffer.close()
            with self._lock:
                self._room.notify()
            return 0
        left = self._buffer.freeze()
        ids = [delivery.token[0] for delivery in left]
        if ids:
            self._hand_back(ids)
            with self._lock:
                for entry_id in ids:
                    self._in_hand.pop(entry_id, None)
        self._buffer.close()
        self.returned = len(ids)
        return 0

    def _hand_back(self, ids: list[str]) -> None:
        """Give entries fetched and never taken back to the stream for the group's other processes. If the
        server refuses that (out of memory: a hand-back writes each entry again), make them claimable at
        once instead (RELEASE writes nothing), so that no one waits out the visibility timeout for them."""
        args = [self.group, self.run.process_id]
        try:
            self.run.call(lambda: self.scripts["hand_back"](keys=[self.key], args=[*args, *ids]))
            return
        except RedisLost:
            return  # they stay pending: another process claims them after the visibility timeout
        except Exception as exc:  # noqa: BLE001 - refused by the server: release them instead
            logger.warning(
                "%s: handing %d entries back failed (%s); releasing them to be claimed at once",
                self.name,
                len(ids),
                exc,
            )
        idle_ms = int(self.visibility_timeout_s * 1000)
        try:
            self.run.call(lambda: self.scripts["release"](keys=[self.key], args=[*args, idle_ms, *ids]))
        except RedisLost:
            pass
        except Exception:  # noqa: BLE001 - they wait out the visibility timeout: said, not fatal
            logger.exception(
                "%s: releasing %d entries failed; they are claimed after visibility_timeout_s=%g",
                self.name,
                len(ids),
                self.visibility_timeout_s,
            )

    def finish_reading(self) -> None:
        """After every instance has ended: close, and in a solo run read what is left (even if the run never
        started reading) to dead-letter it; join() then waits for that."""
        self.close()
        if self._rejecting and self._fetcher is None:
            try:
                self.start_reading(self._readers or 1, 64)
            except RedisLost:
                pass  # logged when it was lost: what the queue holds stays in Redis

    def shutdown(self) -> None:
        """Wait for the fetcher (in a solo run, until it has read the queue to its end), stop the settler."""
        self.finish_reading()
        if self._fetcher is not None:
            self._fetcher.join(REJECT_TIMEOUT_S if self._rejecting else BLOCK_MS[1] / 1000 * 4)
        if self.settler is not None:
            self.settler.close()

    def freeze(self) -> list[Any]:
        """For a forced exit: nothing more goes in or out; what is fetched stays pending in Redis."""
        self._closed = True
        self._buffer.freeze()
        return []

    # --- fetching --------------------------------------------------------------------------------------

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

    def _grow(self) -> None:
        """A read filled every free slot while instances waited, and items are done with in milliseconds:
        a fast stage, held back by round trips. Read ahead twice as far (up to PREFETCH_MAX). A slow stage
        keeps a small read-ahead, so its items stay spread over the processes that read the queue."""
        with self._lock:
            if self._starved and self._hold_s < FAST_HOLD_S and self._prefetch < PREFETCH_MAX:
                self._free += self._prefetch
                self._prefetch *= 2
            self._starved = False

    def in_hand_ids(self) -> list[str]:
        with self._lock:
            return list(self._in_hand)

    def _fetch(self) -> None:
        last_claim = last_renew = last_nudge = 0.0
        block_ms = BLOCK_MS[0]
        consumer = self.run.process_id
        try:
            self._read_client = self.run.reader()
            self.run.register_reader(self.name, self._read_client)
            while not self._closed or self._rejecting:
                with self._lock:
                    if not self._free:
                        self._room.wait(BLOCK_MS[1] / 1000)
                    free = self._free
                now = time.monotonic()
                if free and now - last_claim >= CLAIM_EVERY_S:
                    claimed = self._claim(free)
                    # A full claim means more may be waiting: they are the oldest entries (their owner
                    # died), so they go before new ones, at the next free slot rather than a second later.
                    last_claim = 0.0 if len(claimed) >= free else now
                    self._take(claimed, claimed=True)
                    continue
                if now - last_renew >= self.visibility_timeout_s / 3:
                    last_renew = now
                    self._renew()
                if free:
                    entries = self.run.call(self._reader(consumer, free, block_ms))
                    if entries:
                        block_ms = BLOCK_MS[0]
                        self._take([(entry_id, fields, 1) for entry_id, fields in entries], claimed=False)
                        if len(entries) == free:
                            self._grow()
                        continue
                    with self._lock:
                        block_ms = BLOCK_MS[0] if self._in_hand else min(block_ms * 2, BLOCK_MS[1])
                # A read found nothing (it waited block_ms, or was woken: an end came somewhere): the end?
                with self._lock:
                    holding = bool(self._in_hand)
                if not holding and self.ended():
                    if not self._rejecting:
                        self._buffer.put_done(self._readers)
                    self.run.wake_readers()  # the groups reading from this queue end: their readers may too
                    return
                if holding and not self._buffer.qsize() and now - last_nudge >= NUDGE_EVERY_S and self.no_more_new():
                    # Nothing new will come, yet entries are held here (a batching sink's batch, which it
                    # would only write at DONE): wake each instance as if it had waited its idle time.
                    last_nudge = now
                    self._buffer.preload([NUDGE] * self._readers)
        except RedisLost:
            self._buffer.put_done(self._readers)  # the run is ending (RedisRun.on_lost stops it)
        except Exception as exc:  # noqa: BLE001 - a refused command (out of memory, say): the run cannot go on
            logger.exception("%s: reading the queue failed", self.name)
            self.run.lose(
                self.run.vanished()
                or RedisLost(f"Redis at {self.run.describe()} refused the run's commands: {type(exc).__name__}: {exc}")
            )
            self._buffer.put_done(self._readers)
        finally:
            if self._read_client is not None:
                self._read_client.close()

    def _reader(self, consumer: str, count: int, block_ms: int) -> Callable[[], list[tuple]]:
        """One read of new entries, for run.call. A try that is retried may have been delivered entries whose
        reply the lost connection took (a server restarting, say): they are pending here, unseen, so the
        retry first takes those back (this consumer's own pending entries not in hand), instead of leaving
        them to be claimed only once they idle past visibility_timeout_s."""
        tries = [0]

        def read() -> list[tuple]:
            tries[0] += 1
            if tries[0] > 1:
                self.run.register_reader(self.name, self._read_client)  # a new connection: a new client id
                held = set(self.in_hand_ids())  # before the read: an entry settled meanwhile is not pending
                reply = self._read_client.xreadgroup(self.group, consumer, {self.key: "0"})
                unseen = [
                    (entry_id, fields)
                    for entry_id, fields in (reply[0][1] if reply else [])
                    if fields and _text(entry_id) not in held
                ]
                if unseen:
                    return unseen
            reply = self._read_client.xreadgroup(self.group, consumer, {self.key: ">"}, count=count, block=block_ms)
            return reply[0][1] if reply else []

        return read

    def _claim(self, count: int) -> list[tuple]:
        idle_ms = int(self.visibility_timeout_s * 1000)
        return self.run.call(
            lambda: self.scripts["claim"](
                keys=[self.key], args=[self.group, self.run.process_id, idle_ms, count, self.stage_key("")]
            )
        )

    def _take(self, entries: list[tuple], *, claimed: bool) -> None:
        """Entries now ours: decoded into deliveries for the instances, or dead-lettered (undecodable, poison)."""
        taken = []
        if not claimed:
            self.read_new += len(entries)
        for entry_id, fields, delivered in entries:
            fields = _fields(fields)
            try:
                # Not written by a runner, it may say anything: a negative count must not put off the poison
                # limit (its data is checked below like any other).
                prior = max(int(fields.get("n", 0) or 0), 0)
            except ValueError:
                prior = 0
            count = prior + int(delivered)  # deliveries so far, this one included
            if self.read_payloads is not None and not claimed and "d" in fields:
                self.read_payloads.append(fields["d"])
            taken.append((Delivery(None, (_text(entry_id), count)), fields, count))
        now = time.monotonic()
        with self._lock:
            for delivery, _fields_, _delivered in taken:
                self._in_hand[delivery.token[0]] = delivery
                self._fetched_at[delivery.token[0]] = now
            self._free -= len(taken)
        deliveries = []
        for delivery, fields, delivered in taken:
            entry_id = delivery.token[0]
            try:
                delivery.item = codec.loads(fields["d"])
            except Exception as exc:  # noqa: BLE001 - any entry that cannot be read is data, never fatal here
                delivery.item = fields.get("d")
                error = f"cannot be decoded ({type(exc).__name__}: {exc}); not run"
                if self.settler.dead(delivery, error, kind="failed"):
                    self.on_dead(delivery.item, error, "failed")
                continue
            if delivered > self.max_deliveries:
                error = (
                    f"poison: delivered {delivered - 1} times (crashes included) without being "
                    f"settled; max_deliveries is {self.max_deliveries}"
                )
                if self.settler.dead(delivery, error, kind="poison"):
                    self.on_dead(delivery.item, error, "poison")
                continue
            if claimed:
                logger.warning(
                    "%s: claimed %s from a consumer that held it past visibility_timeout_s=%g (delivery %d)",
                    self.name,
                    entry_id,
                    self.visibility_timeout_s,
                    delivered,
                )
            deliveries.append(delivery)
        if deliveries and self._rejecting:
            for delivery in deliveries:
                self._reject(delivery)
        elif deliveries:
            self._buffer.preload(deliveries)
            self.on_fetched(len(deliveries))

    def _reject(self, delivery: Delivery) -> None:
        """A solo run's queue after its readers stopped: dead-letter the entry, as a closed local queue does."""
        try:
            ours = self.settler.dead(
                delivery, "not processed: the queue was closed (pipeline stopping or group ended)", kind="stopping"
            )
        except RedisLost:
            ours = True  # recorded here only: it stays pending in Redis, in a run no other process joins
        if ours:
            self.on_reject(delivery.item)

    def _renew(self) -> None:
        ids = self.in_hand_ids()
        if ids:
            self.run.call(lambda: self.scripts["renew"](keys=[self.key], args=[self.group, self.run.process_id, *ids]))


def _unwrapping(hold: Hold | None) -> Hold | None:
    """`hold` for the fetched buffer, whose deliveries wrap this queue's: it gets the entry's own delivery."""
    if hold is None:
        return None

    def held(wrapper: Delivery) -> None:
        if wrapper.item is not NUDGE:
            hold(wrapper.item)

    return held


def _text(value: Any) -> str:
    # An entry someone else wrote may hold any bytes (a pickle, say): kept as escaped text, never fatal, so
    # that it can be dead-lettered as undecodable instead of stopping the fetcher.
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _fields(fields: Any) -> dict[str, Any]:
    if isinstance(fields, dict):
        return {_text(k): _text(v) for k, v in fields.items()}
    flat = list(fields)
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
