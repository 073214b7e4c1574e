"""Where an instance's items go once processed, and how they are settled with their transport: the Exits
interface (core.run.loop drives it) and LocalExits, for a group whose input is a queue in this process or whose
outputs are (core/run/redis_exits.py settles with a Redis input; core/modes/child.py reports to the parent).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Protocol

from core.run.group import WorkerGroup
from core.transport.base import Delivery, is_shared
from core.transport.local import LocalQueue


class Exits(Protocol):
    """Where an instance's items go, and how they are settled with their transport."""

    def check(self, outputs: list[Any]) -> None:
        """Raise ItemError when one of `outputs` cannot go to every output queue (a Redis queue takes only what
        JSON carries); nothing is sent. Called on a generator's outputs that go to disk while it runs."""

    def emit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        """Send every output to every output queue; with `final`, the delivery is then settled. Raise only
        before anything was sent. Return the seconds spent waiting for room downstream. An item's outputs
        come in one call, or, past core.run.spool.MEMORY_OUTPUTS, in parts (`final` False) once it has finished."""

    async def aemit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        """emit() without blocking an event loop."""

    def stored(self, deliveries: list[Delivery]) -> None:
        """A batch sink wrote these: settle them."""

    def dead_letter(self, delivery: Delivery, error: str, *, attempts: int, kind: str) -> bool:
        """Record the item as dead-lettered and settle it; False when the record could not be written."""


class LocalExits:
    """How items of a group running in this process leave it: outputs into the output queues, records
    into the dead-letter file; the delivery is then settled with its input queue. Every output is checked
    against every output queue before any is sent (a Redis queue takes only what JSON carries)."""

    def __init__(self, group: WorkerGroup) -> None:
        self.group = group
        self.outputs = group.outputs
        self.input = group.input
        self._redis = [queue for queue in self.outputs if is_shared(queue)]

    def check(self, outputs: list[Any]) -> None:
        """Raise ItemError when one of `outputs` cannot go to every output queue (a Redis queue takes only
        what JSON carries); nothing is sent."""
        if self._redis:
            self._redis[0].encoder.check(outputs)

    def _payloads(self, outputs: list[Any]) -> list[str] | None:
        """The outputs as a Redis queue takes them (ItemError if one cannot be), or None without one: written
        once, for every Redis queue of the fan-out."""
        return self._redis[0].encoder.encode(outputs) if self._redis and outputs else None

    def emit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        payloads = self._payloads(outputs)  # before anything is sent: an output one queue refuses fails the item
        blocked_s = 0.0
        for queue in self.outputs if outputs else ():
            if payloads is not None and is_shared(queue):
                blocked_s += queue.writer.put_payloads(payloads)
                continue
            done = queue.put_some(outputs) if isinstance(queue, LocalQueue) else 0  # what fits now
            if done < len(outputs):
                blocked_s += queue.put_many(outputs[done:])  # the rest waits for room
        if final:
            self.input.ack(delivery)
        return blocked_s

    async def aemit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        payloads = self._payloads(outputs)
        blocked_s = 0.0
        for queue in self.outputs if outputs else ():
            done = queue.put_some(outputs) if isinstance(queue, LocalQueue) else 0  # what fits now, in the loop
            if done < len(outputs):
                import asyncio  # loaded already: this runs in an event loop (a threads-only run never loads it)

                started = time.perf_counter()  # wait for room (or for Redis) off the event loop
                send: Callable[[], float] = (
                    functools.partial(queue.writer.put_payloads, payloads)
                    if payloads is not None and is_shared(queue)
                    else functools.partial(queue.put_many, outputs[done:])
                )
                await asyncio.get_running_loop().run_in_executor(None, send)
                blocked_s += time.perf_counter() - started
        if final:
            self.input.ack(delivery)
        return blocked_s

    def emit_many(self, emits: list[tuple[Delivery, list[Any], bool]]) -> list[BaseException | None]:
        """emit() for a batch of (delivery, outputs, final), each queue filled in one go; the error of each
        (None: sent). What worker processes report arrives this way. An item with an output one queue
        cannot take sends none of its outputs anywhere."""
        errors: list[BaseException | None] = []
        outputs: list[Any] = []
        payloads: list[str] = []
        for _, items, _ in emits:
            try:
                encoded = self._payloads(items)
            except Exception as exc:  # noqa: BLE001 - that item's error (an output JSON cannot carry)
                errors.append(exc)
                continue
            errors.append(None)
            outputs += items
            payloads += encoded or ()
        for queue in self.outputs if outputs else ():
            if is_shared(queue):
                queue.writer.put_payloads(payloads)
            else:
                queue.put_many(outputs)
        for (delivery, _, final), error in zip(emits, errors, strict=True):
            if final and error is None:
                self.input.ack(delivery)
        return errors

    def stored(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self.input.ack(delivery)

    def dead_letter(self, delivery: Delivery, error: str, *, attempts: int, kind: str) -> bool:
        written = self.group.dead_letters.write(
            group=self.group.name, item=delivery.item, error=error, attempts=attempts, kind=kind
        )
        self.input.ack(delivery)
        return written
