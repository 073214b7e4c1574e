"""Settling Redis entries: the Settler sends what instances are done with in batches (one script call
per kind, core/redis_scripts.py), and RedisExits is how items of a group reading a Redis queue leave it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from core import codec
from core.errors import ItemError, Returned
from core.group import check_json
from core.queues import Delivery
from core.redact import redact
from core.redis_run import RedisLost

if TYPE_CHECKING:
    from core.redis_queue import RedisQueue

logger = logging.getLogger(__name__)


class Settler:
    """Settles a queue's entries in batches: instances hand it what they are done with and wait; one thread
    sends everything that piled up meanwhile as one script call per kind."""

    def __init__(self, queue: RedisQueue) -> None:
        self.queue = queue
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiting: list[tuple] = []  # (kind, delivery, payload, outputs keys, done event, result)
        self._closed = False
        self.thread = threading.Thread(target=self._loop, name=f"{queue.name}-settler", daemon=True)
        self.thread.start()
        self.dead_letters: Any = None  # the local file, set by the executor

    def settle(self, delivery: Delivery, outputs: list[Any] | None, output_keys: tuple[str, ...] = (),
               on_result: Callable[[Any], None] | None = None) -> bool | None:
        """Acknowledge, with `outputs` added to `output_keys` in the same step when given. With `on_result`,
        return at once and call it later with True, False (another consumer owns the entry now: nothing
        was written) or the exception; without it, wait and return True or False."""
        request = self._settle_request(delivery, outputs, output_keys)
        if on_result is None:
            return self._wait(request)
        self._submit(request, on_result)
        return None

    async def asettle(self, delivery: Delivery, outputs: list[Any] | None, output_keys: tuple[str, ...] = ()) -> bool:
        """settle() for an asyncio task: it waits without holding a thread."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        def deliver(result: Any) -> None:
            loop.call_soon_threadsafe(_set, future, result)
        self._submit(self._settle_request(delivery, outputs, output_keys), deliver)
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    def dead(self, delivery: Delivery, error: str, *, kind: str, attempts: int = 1) -> bool:
        """Dead-letter into the run's dead-letter stream with the acknowledgement; False if not ours."""
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "group": self.queue.group,
                  "queue": self.queue.name, "kind": kind, "item": codec.encode(delivery.item, strict=False),
                  "error": redact(error), "attempts": attempts, "process": self.queue.run.process_id}
        return self._wait(("dead", delivery, redact(json.dumps(record)), ()))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._ready.notify()
        self.thread.join(5)

    @staticmethod
    def _settle_request(delivery: Delivery, outputs: list[Any] | None, output_keys: tuple[str, ...]) -> tuple:
        payloads = [encode(output) for output in outputs or ()]  # an unencodable output fails the item here
        return ("settle", delivery, payloads, output_keys)

    def _wait(self, request: tuple) -> bool:
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

    def _submit(self, request: tuple, deliver: Callable[[Any], None]) -> None:
        lost = self.queue.run.lost
        if lost is not None:  # nothing can be settled now; and the asker may be this settler's own thread
            deliver(lost)  # (stopping the run when it found Redis lost), which must not wait for itself
            return
        with self._lock:
            self._waiting.append((*request, deliver))
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
            self.queue.settled([request[1].token[0] for request, ok in zip(batch, results)
                                if ok is True or ok is False])
            for (*_request, deliver), ok in zip(batch, results):
                deliver(ok)

    def _send(self, batch: list[tuple]) -> list[bool]:
        queue, run = self.queue, self.queue.run
        consumer = run.process_id
        results: dict[int, bool] = {}
        by_outputs: dict[tuple, list[int]] = {}
        for index, (kind, _delivery, _payload, keys, *_) in enumerate(batch):
            by_outputs.setdefault((kind, keys), []).append(index)
        for (kind, keys), indexes in by_outputs.items():
            args = [queue.group, consumer]
            if kind == "settle":
                for index in indexes:
                    payloads = batch[index][2]
                    args += [batch[index][1].token[0], len(payloads), *payloads]
                answer = run.call(lambda: queue.scripts["settle"](keys=[queue.key, *keys], args=args))
            else:
                for index in indexes:
                    args += [batch[index][1].token[0], batch[index][2]]
                answer = run.call(lambda: queue.scripts["dead"](keys=[queue.key, run.key("dead")], args=args))
            for index, ok in zip(indexes, answer):
                results[index] = bool(ok)
        return [results[index] for index in range(len(batch))]


class RedisExits:
    """Where items of a group reading a Redis queue go. Outputs to Redis queues of the run and the
    acknowledgement are one atomic step that a stale owner cannot take (exactly once between Redis queues);
    outputs to local queues are put first, then the entry acknowledged (at least once)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.input: RedisQueue = group.input
        self.redis_outputs = [queue for queue in group.outputs if getattr(queue, "is_redis", False)]
        self.redis_keys = tuple(queue.key for queue in self.redis_outputs)
        self.local = [queue for queue in group.outputs if not getattr(queue, "is_redis", False)]
        self._parts: dict[int, list[Any]] = {}  # a generator's outputs, held until its item is settled
        self.input.on_dead = lambda item, error, kind: group.abandon([item], error, kind=kind, received=True)

    def check(self, outputs: list[Any]) -> None:
        """ItemError when an output cannot go to every output queue (Redis takes what JSON carries)."""
        check_json(outputs)

    def emit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        if not final:  # one atomic step per item: a generator's outputs wait for its last one
            self._parts.setdefault(id(delivery), []).extend(outputs)
            return 0.0
        outputs = self._parts.pop(id(delivery), []) + list(outputs)
        waited = sum(queue.put_many(outputs) or 0.0 for queue in self.local)
        waited += sum(queue.wait_for_room(len(outputs)) for queue in self.redis_outputs) if outputs else 0.0
        self._settle(delivery, outputs)
        return waited

    async def aemit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        if not final:
            self._parts.setdefault(id(delivery), []).extend(outputs)
            return 0.0
        outputs = self._parts.pop(id(delivery), []) + list(outputs)
        waited, loop = 0.0, asyncio.get_running_loop()
        for queue in self.local:  # off the event loop: a full local queue or Redis's answer is waited for
            waited += await loop.run_in_executor(None, queue.put_many, outputs) or 0.0
        for queue in self.redis_outputs if outputs else ():
            waited += await loop.run_in_executor(None, queue.wait_for_room, len(outputs))
        self._settle(delivery, outputs)
        return waited

    def emit_many(self, emits: list[tuple[Delivery, list[Any], bool]]) -> list[BaseException | None]:
        """emit() each (delivery, outputs, final) a worker process reported; the error of each (None: sent)."""
        errors: list[BaseException | None] = []
        for delivery, outputs, final in emits:
            try:
                self.emit(delivery, outputs, final=final)
            except Exception as exc:  # noqa: BLE001 - that item's error (an output JSON cannot carry)
                errors.append(exc)
            else:
                errors.append(None)
        return errors

    def stored(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self.input.settler.settle(delivery, None, on_result=lambda ok, d=delivery: self._stored(ok, d))

    def _settle(self, delivery: Delivery, outputs: list[Any]) -> None:
        """Hand the settlement to the settler and go on: the entry stays pending in Redis (and counted in
        hand by the fetcher) until it is done, and an answer that it was another's corrects the books."""
        self.input.settler.settle(delivery, outputs if self.redis_keys else None, self.redis_keys,
                                  on_result=lambda ok: self._settled(ok, delivery, len(outputs)))
        if self.redis_keys:
            for queue in self.redis_outputs:
                queue.put_count += len(outputs)

    def _settled(self, ok: Any, delivery: Delivery, emitted: int) -> None:
        if ok is True:
            return
        if ok is False:
            logger.warning("%s: %s was claimed by another consumer before it was settled here: its outputs "
                           "were not written; that consumer settles it", self.group.name, delivery.token[0])
        else:
            logger.error("%s: settling %s failed (%s); it stays pending in Redis", self.group.name,
                         delivery.token[0], ok)
            if self.redis_keys:
                # Its outputs were to be written with the acknowledgement, so none were: recorded here as
                # unsettled, as an item in hand when Redis is lost must be.
                self.group.unsettled_dead_letter(delivery.item, emitted, (
                    f"unsettled: processed, but settling it in Redis failed ({ok}), so its outputs were not sent; "
                    "it stays pending there, and another process may take it"))
                return
        self.group.unsettled(emitted)

    def _stored(self, ok: Any, delivery: Delivery) -> None:
        if ok is not True:
            logger.warning("%s: %s was stored here but not acknowledged (%s); if another consumer stores it "
                           "again, the sink's unique key makes that a no-op", self.group.name, delivery.token[0],
                           "claimed by another consumer" if ok is False else ok)

    def dead_letter(self, delivery: Delivery, error: str, *, attempts: int, kind: str) -> bool:
        self._parts.pop(id(delivery), None)
        try:
            ours = self.input.settler.dead(delivery, error, kind=kind, attempts=attempts)
        except RedisLost:
            kind, error = "unsettled", (f"{error}; and Redis could not be reached to settle it: it stays pending "
                                        "there and another process may take it")
        else:
            if not ours:
                raise Returned(f"{delivery.token[0]} is owned by another consumer now")
        return self.group.dead_letters.write(group=self.group.name, item=delivery.item, error=error,
                                             attempts=attempts, kind=kind)


def _set(future: Any, result: Any) -> None:
    if not future.done():
        future.set_result(result)


def encode(item: Any) -> str:
    """An item as JSON for Redis; ItemError when it holds something JSON cannot carry."""
    try:
        return codec.dumps(item)
    except codec.NotEncodable as exc:
        raise ItemError(f"cannot be written to a Redis queue: {exc}") from None
