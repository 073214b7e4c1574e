"""The Redis transport: a queue is a Redis stream with one consumer group (its reader group), read by every
process that runs that group, on any machine.

An item taken is acknowledged only once it is settled, by the scripts of core/transport/redis/scripts.py, which
check that this consumer still owns the entry (core/transport/redis/settle.py). The queue is the interface of
core/transport/base.py over its parts: the stream and its keys (stream.py), the writer that adds entries and
waits for room (writer.py), the fetcher thread that reads them for this process's instances (fetcher.py), the
entries it holds and their leases (leases.py), and how items are written as JSON (encoding.py).

Items are JSON (core.base.codec), never pickles: whoever can write to Redis cannot run code here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.transport.base import DONE, NUDGE, Delivery, Empty, Hold
from core.transport.local import LocalQueue
from core.transport.redis.client import RedisRun
from core.transport.redis.encoding import Encoder
from core.transport.redis.fetcher import Fetcher
from core.transport.redis.leases import Leases
from core.transport.redis.settle import Settler
from core.transport.redis.stream import Stream
from core.transport.redis.writer import Writer


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
        self.stream = Stream(name, run, group=reader, visibility_timeout_s=visibility_timeout_s)
        # the stream's identity, as the run's ends, its ledger and the group's exits name it
        self.run, self.redis, self.key, self.group = run, run.redis, self.stream.key, reader
        self.closed = False
        self.on_reject: Callable[[Any], None] = lambda item: None
        #: Records an entry the fetcher dead-lettered (undecodable, poison) in the reading group's own books
        #: and dead-letter file, as its Redis dead letter is: (item, error, kind). Set by RedisExits.
        self.on_dead: Callable[[Any, str, str], None] = lambda item, error, kind: None
        self.ended: Callable[[], bool] = lambda: False  # set by the executor (core/transport/redis/ends.py)
        self.no_more_new: Callable[[], bool] = lambda: False  # closed, and every entry delivered
        self.put_count = self.get_count = 0
        self.preloaded = 0  # replayed items put in by the runner (core.transport.local.LocalQueue.preloaded)
        #: Writes items as JSON for this queue (shared by the run's exits that write here: core/run/exits.py,
        #: core/run/redis_exits.py), reusing what a check wrote.
        self.encoder = Encoder(run)
        self.writer = Writer(self.stream, maxsize, self)
        self.leases = Leases(self.stream)
        self.settler = Settler(self.stream, self.leases.settled)
        self._buffer = LocalQueue(f"{name}.fetched", 1)  # entries fetched for this process's instances
        self._buffer.on_reject = lambda delivery: None
        self.fetcher = Fetcher(
            self,
            self.stream,
            leases=self.leases,
            settler=self.settler,
            buffer=self._buffer,
            solo=solo,
            max_deliveries=max_deliveries,
        )

    # --- the queue interface (producer side) --------------------------------------------------------

    @property
    def high_water(self) -> int:
        """The most entries this process held fetched and not yet taken."""
        return self._buffer.high_water

    def qsize(self) -> int:
        """Entries this process fetched that no instance took yet (the stream itself is the run's, see
        Distributed.ledger): the local view, cheap enough to sample for the live status. Once the run's keys
        vanished, a solo run's entries that went with them count too: they are lost."""
        return self._buffer.qsize() + self._vanished()

    def put(self, item: Any) -> bool:
        """Add one item, waiting for room."""
        self.put_many([item])
        return True

    def put_nowait(self, item: Any) -> bool:
        """Add one item: a Redis queue takes it now (only a local one may be full)."""
        self.put_many([item])
        return True

    def put_many(self, items: list[Any], *, wait: bool = True) -> float:
        """Add items (waiting while the stream holds maxsize entries); return the seconds spent waiting.
        An item that cannot be written as JSON, or is larger than the server takes, raises ItemError before
        anything is added."""
        return self.writer.put_payloads(self.encoder.encode(items), wait=wait)

    def preload(self, items: list[Any]) -> int:
        """Items replayed into this queue (beyond maxsize, as for a local queue), counted as preloaded, not put."""
        items = list(items)
        self.put_many(items, wait=False)
        self.put_count -= len(items)
        self.preloaded += len(items)
        return len(items)

    def put_done(self, count: int) -> None:
        """Producers in this process ended: their end marks are written by the executor (Members.end_group,
        core/transport/redis/members.py)."""

    # --- the queue interface (consumer side) --------------------------------------------------------

    def get(self, timeout_s: float | None = None, *, wake_at: int = 1, hold: Hold | None = None) -> Delivery | Any:
        """`wake_at` is not used: entries arrive in reads of many, and an idle stream nudges a batch to flush."""
        if not self._buffer.qsize():
            self.leases.starved = True
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
            self.leases.starved = True
        delivery = self._buffer.get_or_wait(loop, _unwrapping(hold))
        if delivery is DONE or not isinstance(delivery, Delivery):
            return delivery  # DONE, or a future to wait on
        delivery = delivery.item
        if delivery is NUDGE:
            raise Empty
        self.get_count += 1
        return delivery

    def forget_waiter(self, future: Any) -> None:
        """A future get_or_wait gave will not be awaited."""
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
        """Stop reading (Fetcher.stop: what was fetched goes back to the stream, or in a solo run is read to
        the end and dead-lettered)."""
        if self.closed:
            return 0
        self.closed = True
        self.fetcher.stop()
        return 0

    def freeze(self) -> list[Any]:
        """For a forced exit: nothing more goes in or out; what is fetched stays pending in Redis."""
        self.closed = True
        self._buffer.freeze()
        return []

    def _vanished(self) -> int:
        """In a solo run whose keys vanished from Redis: the entries this process added and never read (no
        other process reads a solo run's queues, so they are gone). 0 otherwise: in a shared run other
        processes read them too, and only the whole run could tell."""
        return max(self.writer.added - self.fetcher.read_new, 0) if self.solo and self.run.gone else 0


def _unwrapping(hold: Hold | None) -> Hold | None:
    """`hold` for the fetched buffer, whose deliveries wrap this queue's: it gets the entry's own delivery."""
    if hold is None:
        return None

    def held(wrapper: Delivery) -> None:
        if wrapper.item is not NUDGE:
            hold(wrapper.item)

    return held
