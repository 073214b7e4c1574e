"""What the instances of one worker group share: queues, input values, counters, resources."""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable

from core.channel import Channel
from core.config import WorkerSpec
from core.ledger import Counts, DeadLetters

if TYPE_CHECKING:
    from workers.base import Worker

logger = logging.getLogger(__name__)
_NO_VALUE = object()


class WorkerGroup:
    """One named group: its spec, its queues, its instances and everything they share."""

    def __init__(
        self, spec: WorkerSpec, *, input: Channel | None = None, outputs: Iterable[Channel] = (),
        dead_letters: DeadLetters, stop: threading.Event | None = None,
        on_exit: Callable[[Worker], None] | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.input = input
        self.outputs = list(outputs)
        self.dead_letters = dead_letters
        self.stop = stop or threading.Event()
        self.workers: list[Worker] = []
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._values = iter(spec.input_values or ())
        self._resources: dict[str, Any] = {}
        # Items dead-lettered on the group's behalf outside its threads (a closed input queue).
        self._extra = Counts()

    def next_value(self) -> tuple[bool, Any]:
        """(True, value) for the next input value not yet taken by any instance, else (False, None)."""
        with self._lock:
            value = next(self._values, _NO_VALUE)
        return (False, None) if value is _NO_VALUE else (True, value)

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """The one object under `key` for the whole group, made by `factory` on first use."""
        with self._lock:
            if key not in self._resources:
                self._resources[key] = factory()
            return self._resources[key]

    def dead_letter(self, item: Any, error: str, *, attempts: int = 1, counts: Counts | None = None) -> None:
        """Write `item` to the dead-letter file and count it (on `counts`, or the group's own)."""
        self.dead_letters.write(group=self.name, item=item, error=error, attempts=attempts)
        if counts is not None:
            counts.dead_lettered += 1
            return
        with self._lock:
            self._extra.dead_lettered += 1

    def reject(self, item: Any) -> None:
        """An item for this group that its closed input queue refused: received and dead-lettered."""
        with self._lock:
            self._extra.received += 1
        self.dead_letter(item, "not processed: the queue was closed (pipeline stopping or group ended)")

    def counts(self) -> Counts:
        """The group's totals over its instances."""
        total = Counts()
        with self._lock:
            total += self._extra
        for worker in self.workers:
            total += worker.counts
        return total

    def finished(self) -> bool:
        """True when every instance has left its loop."""
        return all(worker.finished for worker in self.workers)

    def crashed(self) -> int:
        """How many instances ended with an exception outside process()."""
        return sum(1 for worker in self.workers if worker.crash is not None)

    def worker_exited(self, worker: Worker) -> None:
        """Called by each instance as its thread ends."""
        if self._on_exit is not None:
            self._on_exit(worker)

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
