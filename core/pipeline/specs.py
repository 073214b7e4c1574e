"""What a validated pipeline file describes: queues and worker groups (core.pipeline.config builds them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAXSIZE = 1000
QUEUE_BACKENDS = ("local", "redis")


@dataclass(frozen=True)
class QueueSpec:
    """A named bounded queue."""

    name: str
    maxsize: int = DEFAULT_MAXSIZE
    #: Where the queue lives: "local" (in this process) or "redis".
    backend: str = "local"
    #: Redis: an entry held longer than this by a consumer that does not renew it is claimed by another.
    visibility_timeout_s: float = 30.0
    #: Redis: deliveries (crashes included) after which an entry is dead-lettered as poison.
    max_deliveries: int = 5
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class WorkerSpec:
    """A named group of identical worker instances."""

    name: str
    location: str
    class_name: str
    instances: int = 1
    #: Child processes the instances run in; 0 runs them in the main process.
    processes: int = 0
    input_queue: str | None = None
    output_queues: tuple[str, ...] = ()
    input_values: tuple[Any, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    line: int = 0
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline: queues and worker groups, in file order."""

    path: str
    queues: dict[str, QueueSpec]
    workers: list[WorkerSpec]
    #: Worker classes by group name, filled by the import check.
    classes: dict[str, type] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The file's stem; names the lock and the dead-letter file."""
        return Path(self.path).stem

    def producers(self, queue: str) -> list[WorkerSpec]:
        """Groups that write to `queue`."""
        return [w for w in self.workers if queue in w.output_queues]

    def consumer(self, queue: str) -> WorkerSpec | None:
        """The one group that reads `queue` (validation refuses two)."""
        return next((w for w in self.workers if w.input_queue == queue), None)

    def reader(self, queue: str) -> WorkerSpec:
        """The group that reads `queue`, in a pipeline that passed its checks (every queue has one)."""
        consumer = self.consumer(queue)
        if consumer is None:
            raise KeyError(f"no worker group reads queue {queue!r}")
        return consumer
