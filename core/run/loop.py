"""The one item loop: take, process, emit, settle, count, dead-letter. Written once; a thread drives it
with run(), an asyncio task with arun(), and a child process runs the same drivers on its own side
of a pipe. They differ only in how items arrive (the inbox) and leave (the Exits).

An instance never leaves an item unrecorded: every item it takes is held until it is settled (emitted,
stored or dead-lettered), and whatever it still holds when it ends, by a crash included, is dead-lettered.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from core.api.worker import BatchWorker, Worker, flushes
from core.base.collector import startup_gc
from core.base.errors import Returned
from core.run.batching import Batch
from core.run.hand import ErrorLog, Hand
from core.run.spool import Spool
from core.transport.base import DONE, Delivery, Empty, Hold

if TYPE_CHECKING:
    from core.run.exits import Exits

logger = logging.getLogger(__name__)


class Inbox(Protocol):
    """Where an instance's items come from (a queue of any transport)."""

    def get(self, timeout_s: float | None = None, *, wake_at: int = 1, hold: Hold | None = None) -> Delivery | Any:
        """The next delivery (or DONE); `hold` gets it under the queue's lock, before get() returns."""


class Instance:
    """One running copy of a worker and the loop around it; `counts` are its ledger."""

    def __init__(
        self,
        worker: Worker,
        *,
        exits: Exits,
        stop: threading.Event,
        on_exit: Callable[[Instance], None] = lambda instance: None,
        clock: Callable[[], float] = time.monotonic,
        errors: ErrorLog | None = None,
    ) -> None:
        self.worker = worker
        self.name = worker.name
        self.exits = exits
        self.stop = stop
        self.crash: BaseException | None = None
        self.finished = False
        self.batching = isinstance(worker, BatchWorker)
        self.flushing = flushes(type(worker))  # its items are settled once a flush() after them has returned
        self._on_exit = on_exit
        self._clock = clock
        self.hand = Hand(self.name, exits, batching=self.batching, flushing=self.flushing, errors=errors)
        self.counts = self.hand.counts
        self._hold = self.hand.take  # one bound method for every take (the child's inbox keys on it)
        self._batch = Batch(self.hand, worker, stop, clock) if self.batching or self.flushing else None
        self.hand.batch = self._batch
        startup_gc.expect()  # start-up ends for the collector once every instance has set up

    # --- the drivers ------------------------------------------------------------------------------

    def run(self, inbox: Inbox) -> None:
        """Drive the loop in this thread until DONE."""
        try:
            try:
                self.worker.setup()
            finally:
                startup_gc.set_up()
            batch = self._batch  # a BatchWorker's or a flushing worker's; None for any other
            while (delivery := self._take(inbox)) is not DONE:
                started = time.perf_counter()
                if self.batching and batch is not None:
                    if batch.add(delivery):
                        ended = not batch.full() and self._top_up(inbox, batch)
                        batch.flush()
                        if ended:
                            break
                elif self._handle(delivery) and batch is not None:
                    batch.flush()
                self.counts.busy_s += time.perf_counter() - started
            self._write_out()
        except BaseException as exc:  # recorded and logged: the thread ends here either way
            self._crashed(exc)
        finally:
            try:
                self.worker.teardown()
            except Exception as exc:  # noqa: BLE001
                self._teardown_failed(exc)
            self._end()

    async def arun(self, take: Callable[[float, Hold], Awaitable[Delivery | Any]]) -> None:
        """Drive the loop as an asyncio task; `take(timeout_s, hold)` awaits the next delivery or raises Empty."""
        import asyncio  # loaded already (this runs in an event loop); a threads-only run never loads it

        try:
            try:
                await _maybe_await(self.worker.setup())
            finally:
                startup_gc.set_up()
            while True:
                try:
                    delivery = await take(self._wait_s(), self._hold)
                except Empty:
                    if self._batch:
                        await self._aflush()
                    else:
                        await _maybe_await(self.worker.on_idle())
                    continue
                if delivery is DONE:
                    break
                started = time.perf_counter()
                sent = [0]
                try:
                    result = self.worker.process(delivery.item)
                    if inspect.isasyncgen(result):
                        spool = Spool(self.exits.check)
                        try:
                            async for output in result:
                                spool.add(output)
                            for chunk, final in _parts(spool):  # once it has finished, not before
                                await self._asend(delivery, chunk, sent, final=final)
                        finally:
                            spool.close()
                    else:
                        outputs = _outputs(await result if inspect.isawaitable(result) else result)
                        await self._asend(delivery, outputs, sent, final=True)
                except Returned:
                    self.hand.returned(delivery)
                except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others
                    self.hand.fail(delivery, exc, sent=sent[0])
                else:
                    if self.hand.emitted(delivery):
                        await self._aflush()
                self.counts.busy_s += time.perf_counter() - started
            await self._aflush()
        except BaseException as exc:
            self._crashed(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise  # the loop is being torn down: the task must end as cancelled
        finally:
            try:
                await _maybe_await(self.worker.teardown())
            except Exception as exc:  # noqa: BLE001
                self._teardown_failed(exc)
            self._end()

    # --- what the drivers share ------------------------------------------------------------------

    def _wait_s(self) -> float:
        """How long to wait for an item: idle_timeout_s, or until a batch under way is due."""
        return min(self.worker.idle_timeout_s, self._batch.due_in_s()) if self._batch else self.worker.idle_timeout_s

    def _take(self, inbox: Inbox) -> Delivery | Any:
        while True:
            # A batch under way sleeps until it could be filled, or is due (a flushing worker takes each item).
            wake_at = self._batch.room() if self.batching and self._batch else 1
            try:
                return inbox.get(self._wait_s(), wake_at=wake_at, hold=self._hold)
            except Empty:
                started = time.perf_counter()
                if self._batch:
                    self._write_out()
                else:
                    self.worker.on_idle()
                self.counts.busy_s += time.perf_counter() - started

    def _write_out(self) -> None:
        """Write the batch under way, or flush what the worker buffered."""
        if self._batch is not None:
            self._batch.flush()

    async def _aflush(self) -> None:
        if self._batch is not None:
            await self._batch.aflush()

    def _top_up(self, inbox: Inbox, batch: Batch) -> bool:
        """A batch fell due before it was full: what is queued by now goes into it (up to its size) before it
        is written, without waiting; True when a DONE came instead."""
        while not batch.full():
            try:
                delivery = inbox.get(0, hold=self._hold)
            except Empty:
                return False
            if delivery is DONE:
                return True
            batch.add(delivery)
        return False

    def _handle(self, delivery: Delivery) -> bool:
        """Process one item; True when the items since the last flush() are now to be flushed."""
        sent = [0]
        try:
            result = self.worker.process(delivery.item)
            if inspect.isgenerator(result):
                spool = Spool(self.exits.check)
                try:
                    for output in result:
                        spool.add(output)
                    for chunk, final in _parts(spool):  # once it has finished, not before
                        self._send(delivery, chunk, sent, final=final)
                finally:
                    spool.close()
            else:
                self._send(delivery, _outputs(result), sent, final=True)
        except Returned:
            self.hand.returned(delivery)
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others
            self.hand.fail(delivery, exc, sent=sent[0])
        else:
            return self.hand.emitted(delivery)
        return False

    def _send(self, delivery: Delivery, outputs: list[Any], sent: list[int], *, final: bool = False) -> None:
        final = final and not self.flushing  # a flushing worker's item is settled once flushed
        if outputs or final:
            self.counts.blocked_s += self.exits.emit(delivery, outputs, final=final)
            self.counts.emitted += len(outputs)
            sent[0] += len(outputs)

    async def _asend(self, delivery: Delivery, outputs: list[Any], sent: list[int], *, final: bool = False) -> None:
        final = final and not self.flushing
        if outputs or final:
            self.counts.blocked_s += await self.exits.aemit(delivery, outputs, final=final)
            self.counts.emitted += len(outputs)
            sent[0] += len(outputs)

    def in_hand(self) -> list[Delivery]:
        """Deliveries taken and not yet settled (the batch included), for a forced exit to record."""
        return self.hand.in_hand()

    def give_up(self) -> list[Delivery]:
        """For a forced exit: what this instance holds now, which the exit records; from now on it records
        nothing (an item it finishes after this was recorded by the exit as abandoned: it may have been
        completed)."""
        return self.hand.give_up()

    def _crashed(self, exc: BaseException) -> None:
        self.crash = exc
        if isinstance(exc, Exception):
            logger.exception("%s crashed; the rest of the pipeline goes on", self.name)
        else:
            logger.error("%s ended by %s; the rest of the pipeline goes on", self.name, type(exc).__name__)

    def _teardown_failed(self, exc: Exception) -> None:
        self.crash = self.crash or exc
        logger.exception("%s: teardown failed", self.name)

    def _end(self) -> None:
        """Dead-letter whatever is still held, then tell the runner this instance ended."""
        left = self.in_hand()
        if left:
            why = f"{type(self.crash).__name__}: {self.crash}" if self.crash else "the instance ended"
            logger.error("%s ended holding %d item(s); dead-lettering them", self.name, len(left))
            for delivery in left:
                self.hand.dead_letter(delivery, f"crashed: {why}", kind="crashed")
        if self._batch is not None:
            self._batch.clear()
        self.finished = True
        self._on_exit(self)


def _parts(spool: Spool) -> Iterator[tuple[list[Any], bool]]:
    """A finished generator's outputs as (chunk, final): one chunk when they fit in memory."""
    chunks = spool.chunks()
    chunk = next(chunks)
    for following in chunks:
        yield chunk, False
        chunk = following
    yield chunk, True


def _outputs(result: Any) -> list[Any]:
    """A returned value is one output; None is none."""
    return [] if result is None else [result]


async def _maybe_await(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result
