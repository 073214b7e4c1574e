"""The writing side of a Redis queue: entries added in one script call each, never twice for a retried call
(core/transport/redis/scripts.py), after waiting while maxsize entries wait to be read; a source's input
values written once for the whole run.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from core.base import codec
from core.base.errors import ItemError
from core.transport.redis.encoding import SIZE_REFUSALS
from core.transport.redis.stream import Stream, text

ROOM_WAIT_S = (0.005, 0.2)  # a producer waiting for room polls from 5 ms, backing off to 200 ms


class Ledger(Protocol):
    """Where the writer counts the items producers put (the queue's ledger, core/transport/base.py)."""

    put_count: int


class Writer:
    """Adds entries to a queue's stream for this process's producers, holding them back while it is full."""

    def __init__(self, stream: Stream, maxsize: int, ledger: Ledger) -> None:
        self.stream = stream
        self.maxsize = maxsize
        self.ledger = ledger
        #: Entries this process is known to have added (written and answered): in a solo run, those it never
        #: read vanish with the run's keys (RedisQueue.qsize).
        self.added = 0
        self._lock = threading.Lock()
        self._room_seen = 0  # entries that may still be added before the stream's length is asked again

    def put_payloads(self, payloads: list[str], *, wait: bool = True) -> float:
        """Add items already written as JSON (core.transport.redis.encoding.encode_all), waiting for room
        unless not to `wait`; return the seconds spent waiting. One script call that records its call id with
        the entries, so that a retry after a lost reply does not add them again."""
        if not payloads:
            return 0.0
        waited = self.wait_for_room(len(payloads)) if wait else 0.0
        run = self.stream.run
        field, seq = run.thread_call_id()
        keys, args = [self.stream.key, run.key("calls")], [field, seq, *payloads]

        def recheck() -> None:  # the server may have closed the connection on a payload it takes no more
            run.refresh_limits()
            for payload in payloads:
                if len(payload.encode("utf-8")) > run.max_bulk_bytes:
                    raise ItemError(
                        f"cannot be written to a Redis queue: larger than the server takes "
                        f"(proto-max-bulk-len {run.max_bulk_bytes})"
                    )

        try:
            self.stream.script("put", keys, args, before_retry=recheck)
        except run.response_error as exc:
            if any(refusal in str(exc) for refusal in SIZE_REFUSALS):
                raise ItemError(f"refused by Redis for its size: {exc}") from None
            raise
        self.ledger.put_count += len(payloads)
        self.added += len(payloads)
        return waited

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
        while (length := self.stream.run.call(self._waiting)) >= self.maxsize:
            started = time.perf_counter()
            time.sleep(pause_s)  # Redis cannot wake us when a reader elsewhere makes room: look again
            waited += time.perf_counter() - started
            pause_s = min(pause_s * 2, ROOM_WAIT_S[1])
        with self._lock:
            self._room_seen = self.maxsize - length - count
        return waited

    def fill_once(self, items: list[Any]) -> int:
        """A source's input values, written once for the whole run (other processes find them there)."""
        stream = self.stream
        stream.create()
        payloads = [codec.dumps(item) for item in items]
        written = stream.script("fill", [stream.key, stream.run.key("closed", stream.name)], payloads)
        self.added += int(written)
        return int(written)

    def _waiting(self) -> int:
        """Entries not yet delivered to any reader: the stream's length less those pending (settled ones
        are deleted from the stream with their acknowledgement)."""
        with self.stream.redis.pipeline(transaction=True) as pipe:
            pipe.xlen(self.stream.key)
            pipe.xinfo_groups(self.stream.key)
            length, groups = pipe.execute()
        pending = sum(int(g["pending"]) for g in groups if text(g["name"]) == self.stream.group)
        return length - pending
