"""Building a run from its pipeline spec: a queue for each queue entry (in this process, or in Redis), and for
each worker group of this process its input (a source's input values, or its queue), its runner and instances.
The executor (core/app/executor.py) then runs what this built."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.modes.choice import make_runner
from core.pipeline.config import ConfigError, PipelineSpec, Problem
from core.pipeline.specs import QueueSpec, WorkerSpec
from core.run.group import WorkerGroup
from core.run.ledger import DeadLetters
from core.run.loop import Instance
from core.transport.base import Queue, is_shared
from core.transport.local import LocalQueue

if TYPE_CHECKING:
    from core.run.distributed import Distributed  # imported where a run has Redis queues: it loads redis


class Assembly:
    """Makes a run's queues and groups; `preloads` are the replayed items to put in once the run is open."""

    def __init__(
        self,
        spec: PipelineSpec,
        distributed: Distributed | None,
        *,
        dead_letters: DeadLetters,
        stop: threading.Event,
        on_exit: Callable[[Instance], None],
    ) -> None:
        self.spec = spec
        self.distributed = distributed
        self.dead_letters = dead_letters
        self.stop = stop
        self.on_exit = on_exit
        self.preloads: list[tuple[Queue, list[Any]]] = []

    def queue(self, spec: QueueSpec) -> Queue:
        """The queue of one `queues:` entry."""
        if self.distributed is not None and spec.backend == "redis":
            reader = self.spec.reader(spec.name).name
            return self.distributed.queue(
                spec.name,
                spec.maxsize,
                reader,
                visibility_timeout_s=spec.visibility_timeout_s,
                max_deliveries=spec.max_deliveries,
            )
        return LocalQueue(spec.name, spec.maxsize)

    def group(self, spec: WorkerSpec, queues: dict[str, Queue], replay: dict[str, list[Any]] | None) -> WorkerGroup:
        """One worker group, its runner made (ConfigError when its class refuses its params)."""
        inbox: Queue
        if spec.input_queue is None:  # a source reads its input values like any queue
            values = list(spec.input_values or ()) if replay is None else list(replay.get(spec.name, ()))
            if self.distributed is not None:  # written once for the whole run, however many run the source
                inbox = self.distributed.values(spec, values)
            else:
                inbox = local = LocalQueue(f"{spec.name}.input_values", max(len(values), 1))
                local.preload(values)
        else:
            inbox = queues[spec.input_queue]
            if replay and replay.get(spec.name):
                self.preloads.append((inbox, replay[spec.name]))
        group = WorkerGroup(
            spec,
            input=inbox,
            outputs=[queues[name] for name in spec.output_queues],
            dead_letters=self.dead_letters,
            stop=self.stop,
        )
        inbox.on_reject = group.reject
        cls = self.spec.classes[spec.name]
        try:
            group.runner = make_runner(group, cls, on_exit=self.on_exit, pipeline_path=self.spec.path)
        except (TypeError, ValueError) as exc:
            line = spec.key_lines.get("params", spec.line)
            raise ConfigError(
                [
                    Problem(
                        self.spec.path, line, f"workers.{spec.name}.params", f"{cls.__name__} refused its params: {exc}"
                    )
                ]
            ) from None
        group.instances = group.runner.instances
        group.mode = group.runner.mode
        if group.is_source and not is_shared(inbox):  # nothing writes to them: ended
            inbox.put_done(group.runner.readers)
        return group
