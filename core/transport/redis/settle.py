"""Settling Redis entries: the Settler sends what instances are done with in batches (one script call
per kind, core/transport/redis/scripts.py), their outputs written as core/transport/redis/encoding.py says; how a
group's items leave through it is core/run/redis_exits.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from core.base import codec
from core.base.errors import ItemError
from core.base.redact import redact
from core.transport.base import Delivery
from core.transport.redis.encoding import SIZE_REFUSALS, encode_all, too_large

logger = logging.getLogger(__name__)

CALL_ITEMS = 1000  # items settled by one script call at most (its acknowledgement lists them all)
CALL_CHARS = 8 * 1024 * 1024  # and the outputs of one call, in characters: a batch of large items goes in several
#: A generator's outputs bound for Redis are held here per item up to this many characters of JSON, or this
#: many outputs (a short one costs more as a Python object than as text), then staged in Redis (a list of the
#: entry's own) until its item is settled: memory stays bounded per item.
STAGE_AFTER_CHARS = 1024 * 1024
STAGE_AFTER_OUTPUTS = 4096


class SettledQueue(Protocol):
    """What the Settler needs of its queue's stream (core.transport.redis.stream.Stream)."""

    name: str
    group: str
    key: str
    run: Any
    scripts: Any


class _Refused(Exception):
    """Items of a call the server takes no more (proto-max-bulk-len lowered since they were checked)."""

    def __init__(self, indexes: list[int]) -> None:
        super().__init__(indexes)
        self.indexes = indexes


class _Request:
    """One item to settle: `kind` settle or dead, its payloads (or dead-letter record), output streams,
    staging list, and who waits for the answer."""

    __slots__ = ("kind", "delivery", "data", "keys", "stage", "deliver")

    def __init__(self, kind: str, delivery: Delivery, data: Any, keys: tuple[str, ...], stage: str | None) -> None:
        self.kind, self.delivery, self.data, self.keys, self.stage = kind, delivery, data, keys, stage
        self.deliver: Callable[[Any], None] = lambda result: None

    def chars(self) -> int:
        return sum(len(payload) for payload in self.data) if self.kind == "settle" else len(self.data)

    def largest_bytes(self) -> int:
        values = self.data if self.kind == "settle" else [self.data]
        return max((len(value.encode("utf-8")) for value in values), default=0)


class Settler:
    """Settles a queue's entries in batches: instances hand it what they are done with and wait; one thread
    sends everything that piled up meanwhile as one script call per kind. `on_settled` hears which entries
    were settled or found another's (core.transport.redis.leases.Leases.settled: room for as many more)."""

    def __init__(self, queue: SettledQueue, on_settled: Callable[[list[str]], None]) -> None:
        self.queue = queue
        self.on_settled = on_settled
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiting: list[_Request] = []
        self._closed = False
        self.thread = threading.Thread(target=self._loop, name=f"{queue.name}-settler", daemon=True)

    def start(self) -> None:
        """Begin settling (the queue's reading starts); again, nothing."""
        if self.thread.ident is None:
            self.thread.start()

    def settle(
        self,
        delivery: Delivery,
        outputs: list[Any] | None,
        output_keys: tuple[str, ...] = (),
        on_result: Callable[[Any], None] | None = None,
    ) -> bool | None:
        """Acknowledge, with `outputs` added to `output_keys` in the same step when given. With `on_result`,
        return at once and call it later with True, False (another consumer owns the entry now: nothing
        was written) or the exception; without it, wait and return True or False."""
        payloads = encode_all(outputs or (), self.queue.run.max_bulk_bytes)
        return self.settle_payloads(delivery, payloads, output_keys, on_result=on_result)

    def settle_payloads(
        self,
        delivery: Delivery,
        payloads: list[str],
        output_keys: tuple[str, ...] = (),
        *,
        stage: str | None = None,
        on_result: Callable[[Any], None] | None = None,
    ) -> bool | None:
        """settle() with the outputs already written as JSON (encode_all), after what `stage` holds for it."""
        request = _Request("settle", delivery, payloads, output_keys, stage)
        if on_result is None:
            return self._wait(request)
        self._submit(request, on_result)
        return None

    def dead(
        self,
        delivery: Delivery,
        error: str,
        *,
        kind: str,
        attempts: int = 1,
        stage: str | None = None,
        on_result: Callable[[Any], None] | None = None,
    ) -> bool | None:
        """Dead-letter into the run's dead-letter stream with the acknowledgement (what `stage` holds for it
        is dropped); False if not ours. With `on_result`, return at once and answer there."""
        request = _Request("dead", delivery, self._record(delivery.item, error, kind, attempts), (), stage)
        if on_result is None:
            return self._wait(request)
        self._submit(request, on_result)
        return None

    def close(self) -> None:
        """Send what waits, then stop the thread."""
        with self._lock:
            self._closed = True
            self._ready.notify()
        if self.thread.ident is not None:
            self.thread.join(5)

    def _record(self, item: Any, error: str, kind: str, attempts: int) -> str:
        queue = self.queue
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "group": queue.group,
            "queue": queue.name,
            "kind": kind,
            "item": codec.encode(item, strict=False),
            "error": redact(error),
            "attempts": attempts,
            "process": queue.run.process_id,
        }
        text = json.dumps(record)  # the error is masked; the item is kept exact (a replay must be the same item)
        limit = queue.run.max_bulk_bytes
        if len(text) * 4 > limit and len(text.encode("utf-8")) > limit:
            # Too large for the server (the item was refused for its size, say): the run's stream gets its
            # start; the local dead-letter file has it whole.
            record["item"] = {codec.TAG: "repr", "value": redact(f"{repr(item)[:1000]}... (too large for Redis whole)")}
            text = json.dumps(record)
        return text

    def _wait(self, request: _Request) -> bool:
        done = threading.Event()
        result: list[Any] = []

        def deliver(outcome: Any) -> None:
            result.append(outcome)
            done.set()

        self._submit(request, deliver)
        done.wait()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def _submit(self, request: _Request, deliver: Callable[[Any], None]) -> None:
        if self.thread.ident is None:
            raise RuntimeError(f"{self.queue.name}: items settled before reading started")
        lost = self.queue.run.lost
        if lost is not None:  # nothing can be settled now; and the asker may be this settler's own thread
            deliver(lost)  # (stopping the run when it found Redis lost), which must not wait for itself
            return
        request.deliver = deliver
        with self._lock:
            self._waiting.append(request)
            self._ready.notify()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                batch, self._waiting = self._waiting, []
                if not batch and self._closed:
                    return
            try:
                results = self._send(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter (RedisLost, mostly)
                results = [exc] * len(batch)
            self.on_settled(
                [
                    request.delivery.token[0]
                    for request, ok in zip(batch, results, strict=True)
                    if ok is True or ok is False
                ]
            )
            for request, ok in zip(batch, results, strict=True):
                request.deliver(ok)

    def _send(self, batch: list[_Request]) -> list[Any]:
        """One script call per kind and output streams (or several, for a batch too large for one)."""
        results: dict[int, Any] = {}
        by_outputs: dict[tuple, list[int]] = {}
        for index, request in enumerate(batch):
            by_outputs.setdefault((request.kind, request.keys), []).append(index)
        for (kind, keys), indexes in by_outputs.items():
            for call in _calls(batch, indexes):
                for index, ok in zip(call, self._call(kind, keys, [batch[i] for i in call]), strict=True):
                    results[index] = ok
        return [results[index] for index in range(len(batch))]

    def _call(self, kind: str, keys: tuple[str, ...], requests: list[_Request]) -> list[Any]:
        """One script call for `requests`; an item the server refuses for its size gets an ItemError, the
        others are sent without it."""
        queue, run = self.queue, self.queue.run
        field, seq = run.call_id(f"settle:{queue.name}")
        stages = [request.stage for request in requests if request.stage]
        args: list[Any] = [queue.group, run.process_id, field, seq]
        if kind == "settle":
            args.append(len(keys))
            for request in requests:
                args += [request.delivery.token[0], 1 if request.stage else 0, len(request.data), *request.data]
            script, script_keys = queue.scripts["settle"], [queue.key, run.key("calls"), *keys, *stages]
        else:
            for request in requests:
                args += [request.delivery.token[0], 1 if request.stage else 0, request.data]
            script, script_keys = queue.scripts["dead"], [queue.key, run.key("dead"), run.key("calls"), *stages]

        def recheck() -> None:
            run.refresh_limits()
            too_large = [i for i, request in enumerate(requests) if request.largest_bytes() > run.max_bulk_bytes]
            if too_large:
                raise _Refused(too_large)

        try:
            return [bool(ok) for ok in run.call(lambda: script(keys=script_keys, args=args), before_retry=recheck)]
        except _Refused as refused:
            refusals = {i: too_large(requests[i].largest_bytes(), run.max_bulk_bytes) for i in refused.indexes}
        except run.response_error as exc:
            if not any(text in str(exc) for text in SIZE_REFUSALS):
                raise
            if len(requests) > 1:  # which one? each on its own
                return [ok for request in requests for ok in self._call(kind, keys, [request])]
            refusals = {0: ItemError(f"refused by Redis for its size: {exc}")}
        rest = [request for i, request in enumerate(requests) if i not in refusals]
        answers = iter(self._call(kind, keys, rest) if rest else [])
        return [refusals[i] if i in refusals else next(answers) for i in range(len(requests))]


def _calls(batch: list[_Request], indexes: list[int]) -> list[list[int]]:
    """`indexes` of `batch` cut into script calls of at most CALL_ITEMS items and CALL_CHARS characters."""
    calls: list[list[int]] = [[]]
    chars = 0
    for index in indexes:
        size = batch[index].chars()
        if calls[-1] and (len(calls[-1]) >= CALL_ITEMS or chars + size > CALL_CHARS):
            calls.append([])
            chars = 0
        calls[-1].append(index)
        chars += size
    return calls
