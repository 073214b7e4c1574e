"""What the instances of one worker group share: its queues, resources, ledger and dead letters."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from core.run.ledger import Counts, DeadLetters
from core.transport.base import Delivery, Queue

if TYPE_CHECKING:
    from core.pipeline.config import WorkerSpec

logger = logging.getLogger(__name__)


class Member(Protocol):
    """One of a group's instances (core.run.loop.Instance, a worker process's Unit, a course-style instance)."""

    name: str
    counts: Counts
    finished: bool
    crash: BaseException | None
    batching: bool  # it holds items until they are stored (a BatchWorker; for a worker process, one that flushes)

    def in_hand(self) -> list[Delivery]:
        """Deliveries taken and not yet settled."""

    def give_up(self) -> list[Delivery]:
        """For a forced exit: what it holds now; from then on it records nothing."""


class WorkerGroup:
    """One named group: its spec, its input and output queues, its instances and what they share."""

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        input: Queue,
        outputs: Iterable[Queue] = (),
        dead_letters: DeadLetters,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.input = input
        self.outputs = list(outputs)
        self.dead_letters = dead_letters
        self.stop = stop or threading.Event()
        self.instances: list[Member] = []
        self.is_source = spec.input_queue is None
        self.not_started = 0  # input values dead-lettered because no instance took them
        self.runner: Any = None  # core.modes.threads: where the instances run
        self.mode = "threads"
        self._lock = threading.Lock()
        self._resources: dict[str, Any] = {}
        # Items dead-lettered on the group's behalf outside its instances (a closed input queue).
        self._extra = Counts()
        self.given_up = False  # a forced exit recorded what the group held: nothing more is recorded for it

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """The one object under `key` for the whole group (in this process), made by `factory` on first use."""
        with self._lock:
            if key not in self._resources:
                self._resources[key] = factory()
            return self._resources[key]

    def reject(self, item: Any) -> None:
        """An item for this group that its closed input queue refused: received and dead-lettered. After a
        forced exit gave up, dropped: it is the output of an item the exit recorded as abandoned (only an item
        in hand can still be emitting then)."""
        if self.given_up:
            return
        if self.is_source:
            why, kind = "not started: the run ended before an instance took this input value", "not-started"
        else:
            why, kind = "not processed: the queue was closed (pipeline stopping or group ended)", "stopping"
        self.abandon([item], why, kind=kind, received=True)

    def abandon(self, items: Iterable[Any], why: str, *, kind: str = "abandoned", received: bool = False) -> int:
        """Dead-letter items on the group's behalf, outside its instances: queued for it (`received`: count
        them in), or held by an instance that cannot settle them (a forced exit). Return how many."""
        count = 0
        for item in items:
            written = self.dead_letters.write(group=self.name, item=item, error=why, kind=kind)
            with self._lock:
                self._extra.received += received
                if written:
                    self._extra.dead_lettered += 1
                else:
                    self._extra.unrecorded += 1
                if kind == "not-started":
                    self.not_started += 1
            count += 1
        return count

    def unsettled(self, emitted: int) -> None:
        """An item counted as processed could not be settled after all (its Redis entry was claimed by
        another consumer, which settles it): the books say returned, its outputs unsent."""
        with self._lock:
            self._extra.processed -= 1
            self._extra.returned += 1
            self._extra.emitted -= emitted

    def unsettled_dead_letter(self, item: Any, emitted: int, why: str, *, kind: str = "unsettled") -> None:
        """An item counted as processed whose settling failed (Redis lost; or, as `failed`, refused for its
        size) with its outputs unsent: the books say dead-lettered instead, its outputs taken back."""
        with self._lock:
            self._extra.processed -= 1
            self._extra.emitted -= emitted
            self._extra.failed += kind == "failed"
        self.abandon([item], why, kind=kind)

    def returned(self, count: int) -> None:
        """`count` items held by instances went back to their queue unsettled (a forced exit, Redis)."""
        with self._lock:
            self._extra.returned += count

    def counts(self) -> Counts:
        """The group's totals over its instances."""
        total = Counts()
        with self._lock:
            total += self._extra
        for instance in self.instances:
            total += instance.counts
        return total

    def finished(self) -> bool:
        """True when every instance has left its loop."""
        return all(instance.finished for instance in self.instances)

    def crashed(self) -> int:
        """How many instances (or worker processes) ended with an exception outside process(), or died."""
        return sum(getattr(instance, "crashes", instance.crash is not None) for instance in self.instances)

    def in_hand(self) -> list[Delivery]:
        """Every delivery an instance holds now."""
        return [delivery for instance in self.instances for delivery in instance.in_hand()]

    def give_up(self) -> list[Delivery]:
        """For a forced exit: every delivery its instances hold, taken from them for the exit to record; from
        now on the group records nothing else (see reject)."""
        self.given_up = True
        return [delivery for instance in self.instances for delivery in instance.give_up()]

    def close(self) -> None:
        """Release shared resources (sessions, engines) once every instance has ended."""
        with self._lock:
            resources, self._resources = self._resources, {}
        for key, resource in resources.items():
            closer = getattr(resource, "close", None) or getattr(resource, "dispose", None)
            if closer is None:
                continue
            try:
                closer()
            except Exception:  # noqa: BLE001 - one resource failing to close must not hide the others
                logger.exception("%s: closing %s failed", self.name, key)

    async def aclose(self) -> None:
        """Close the resources that need the event loop they were made on (those with aclose())."""
        with self._lock:
            closing = {key: r for key, r in self._resources.items() if hasattr(r, "aclose")}
            for key in closing:
                del self._resources[key]
        for key, resource in closing.items():
            try:
                await resource.aclose()
            except Exception:  # noqa: BLE001
                logger.exception("%s: closing %s failed", self.name, key)
