"""How the items of a group reading a Redis queue leave it: outputs to the run's Redis queues and the entry's
acknowledgement in one atomic step (core.transport.redis.settle's Settler sends it), outputs to local queues first
and then the acknowledgement; dead letters to the group's file. The group reaches the transport only through here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from core.base.errors import ItemError, Returned
from core.transport.base import Delivery
from core.transport.redis.client import KEY_TTL_S, RedisLost
from core.transport.redis.queue import RedisQueue
from core.transport.redis.settle import STAGE_AFTER_CHARS, STAGE_AFTER_OUTPUTS

logger = logging.getLogger(__name__)


class _Parts:
    """What a generator emitted so far for one item bound for Redis: held here, then staged in Redis."""

    __slots__ = ("payloads", "chars", "count", "staged")

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.chars = 0
        self.count = 0  # outputs emitted for the item so far (held, staged, or put to local queues)
        self.staged = False


class RedisExits:
    """Where items of a group reading a Redis queue go. Outputs to Redis queues of the run and the
    acknowledgement are one atomic step that a stale owner cannot take (exactly once between Redis queues);
    outputs to local queues are put first, then the entry acknowledged (at least once)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.input: RedisQueue = group.input
        self.settler = self.input.settler
        self.redis_outputs = [queue for queue in group.outputs if isinstance(queue, RedisQueue)]
        self.redis_keys = tuple(queue.key for queue in self.redis_outputs)
        self.local = [queue for queue in group.outputs if not isinstance(queue, RedisQueue)]
        self._parts: dict[int, _Parts] = {}  # a generator's outputs for Redis, until its item is settled
        self.input.on_dead = lambda item, error, kind: group.abandon([item], error, kind=kind, received=True)

    def check(self, outputs: list[Any]) -> None:
        """Raise ItemError when one of `outputs` cannot go to every output queue (a Redis queue takes only
        what JSON carries); nothing is sent."""
        if self.redis_outputs:
            self.redis_outputs[0].encoder.check(outputs)

    def emit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        payloads = self._encode(outputs)  # an output Redis cannot take fails the item before anything is sent
        waited = sum(queue.put_many(outputs) or 0.0 for queue in self.local) if outputs else 0.0
        waited += sum(queue.writer.wait_for_room(len(payloads)) for queue in self.redis_outputs) if payloads else 0.0
        if final:
            self._settle(delivery, payloads, len(outputs))
        elif self._hold(delivery, payloads, len(outputs)):
            self._stage(delivery)
        return waited

    async def aemit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        payloads = self._encode(outputs)
        waited, loop = 0.0, asyncio.get_running_loop()
        for queue in self.local if outputs else ():  # off the event loop: a full local queue or Redis's answer
            waited += await loop.run_in_executor(None, queue.put_many, outputs) or 0.0
        for queue in self.redis_outputs if payloads else ():
            waited += await loop.run_in_executor(None, queue.writer.wait_for_room, len(payloads))
        if final:
            self._settle(delivery, payloads, len(outputs))
        elif self._hold(delivery, payloads, len(outputs)):
            await loop.run_in_executor(None, self._stage, delivery)
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
            self.settler.settle(delivery, None, on_result=self._on_stored(delivery))

    def _on_stored(self, delivery: Delivery) -> Callable[[bool], None]:
        return lambda ok: self._stored(ok, delivery)

    def _encode(self, outputs: list[Any]) -> list[str]:
        return self.redis_outputs[0].encoder.encode(outputs) if self.redis_outputs and outputs else []

    def _hold(self, delivery: Delivery, payloads: list[str], count: int) -> bool:
        """Keep a part of a generator's outputs for Redis; True when what is held is due to be staged."""
        parts = self._parts.get(id(delivery))
        if parts is None:
            parts = self._parts[id(delivery)] = _Parts()
        parts.count += count
        if payloads:
            parts.payloads += payloads
            parts.chars += sum(len(payload) for payload in payloads)
        return parts.chars >= STAGE_AFTER_CHARS or len(parts.payloads) >= STAGE_AFTER_OUTPUTS

    def _stage(self, delivery: Delivery) -> None:
        """Move what is held for the item to its staging list in Redis (Returned if it is another's now)."""
        parts = self._parts[id(delivery)]
        stream, run = self.input.stream, self.input.run
        entry_id = delivery.token[0]
        field, seq = run.thread_call_id()
        keys = [stream.key, stream.stage_key(entry_id), run.key("calls")]
        args = [stream.group, run.process_id, entry_id, field, seq, KEY_TTL_S, *parts.payloads]
        (ok,) = stream.script("stage", keys, args)
        if not ok:
            self._parts.pop(id(delivery), None)
            raise Returned(f"{entry_id} is owned by another consumer now")
        parts.staged, parts.payloads, parts.chars = True, [], 0

    def _settle(self, delivery: Delivery, payloads: list[str], count: int) -> None:
        """Hand the settlement to the settler and go on: the entry stays pending in Redis (and counted in
        hand by the fetcher) until it is done, and an answer that it was another's corrects the books."""
        parts = self._parts.pop(id(delivery), None)
        stage = None
        if parts is not None:
            payloads, count = parts.payloads + payloads, parts.count + count
            stage = self.input.stream.stage_key(delivery.token[0]) if parts.staged else None
        self.settler.settle_payloads(
            delivery, payloads, self.redis_keys, stage=stage, on_result=lambda ok: self._settled(ok, delivery, count)
        )
        for queue in self.redis_outputs:
            queue.put_count += count

    def _settled(self, ok: Any, delivery: Delivery, emitted: int) -> None:
        if ok is True:
            for queue in self.redis_outputs:
                queue.writer.added += emitted
            return
        unsent = 0 if self.local else emitted  # what went to local queues went on
        if ok is False:
            logger.warning(
                "%s: %s was claimed by another consumer before it was settled here: its outputs "
                "were not written; that consumer settles it",
                self.group.name,
                delivery.token[0],
            )
        elif isinstance(ok, ItemError):
            self._refused(delivery, emitted, ok)
            return
        else:
            logger.error(
                "%s: settling %s failed (%s); it stays pending in Redis", self.group.name, delivery.token[0], ok
            )
            if self.redis_keys:
                # Its outputs were to be written with the acknowledgement, so none were: recorded here as
                # unsettled, as an item in hand when Redis is lost must be.
                self.group.unsettled_dead_letter(
                    delivery.item,
                    unsent,
                    (
                        f"unsettled: processed, but settling it in Redis failed ({ok}), so its outputs were not sent; "
                        "it stays pending there, and another process may take it"
                    ),
                )
                return
        self.group.unsettled(unsent)

    def _refused(self, delivery: Delivery, emitted: int, error: ItemError) -> None:
        """Redis refused the item's outputs for their size as they were settled: the item's error, as if its
        emit had raised it. Dead-lettered with the acknowledgement (asked without waiting: this is the
        settler's own thread)."""
        why = f"ItemError: {error}"
        logger.warning("%s failed on %r: %s", self.group.name, delivery.item, why)

        def recorded(ok: Any) -> None:
            if ok is True:
                self.group.unsettled_dead_letter(delivery.item, 0 if self.local else emitted, why, kind="failed")
            elif ok is False:
                self.group.unsettled(0 if self.local else emitted)
            else:
                self.group.unsettled_dead_letter(
                    delivery.item,
                    0 if self.local else emitted,
                    (
                        f"unsettled: {why}; and Redis could not be reached to settle it ({ok}): it stays pending "
                        "there, and another process may take it"
                    ),
                )

        self.settler.dead(delivery, why, kind="failed", on_result=recorded)

    def _stored(self, ok: Any, delivery: Delivery) -> None:
        if ok is not True:
            logger.warning(
                "%s: %s was stored here but not acknowledged (%s); if another consumer stores it "
                "again, the sink's unique key makes that a no-op",
                self.group.name,
                delivery.token[0],
                "claimed by another consumer" if ok is False else ok,
            )

    def dead_letter(self, delivery: Delivery, error: str, *, attempts: int, kind: str) -> bool:
        parts = self._parts.pop(id(delivery), None)
        stage = self.input.stream.stage_key(delivery.token[0]) if parts is not None and parts.staged else None
        try:
            ours = self.settler.dead(delivery, error, kind=kind, attempts=attempts, stage=stage)
        except RedisLost:
            kind, error = (
                "unsettled",
                (
                    f"{error}; and Redis could not be reached to settle it: it stays pending "
                    "there and another process may take it"
                ),
            )
        else:
            if not ours:
                raise Returned(f"{delivery.token[0]} is owned by another consumer now")
        return self.group.dead_letters.write(
            group=self.group.name, item=delivery.item, error=error, attempts=attempts, kind=kind
        )
