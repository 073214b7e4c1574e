"""The parent side of `processes: P`: a group's instances in P worker processes (core/modes/child.py), fed
through one pipe each.

No queue is shared between processes, so no process death can wedge one: a multiprocessing.Queue's lock
is a semaphore with no owner, and a reader killed inside get() leaves it taken for good. Here each worker
process has its own duplex pipe, and in the parent a feeder thread moves items from the group's input
queue into it (in batches, at most `window` unsettled at a time: core/modes/unit_feed.py) while a reader
thread takes back what the process reports (core/modes/unit_reports.py): its outputs (put downstream from
here), batches stored, dead letters (written from here, so every process's land in the one file), crashes,
log records.

The parent keeps each process's books (a Unit: core/modes/unit.py, core/modes/unit_books.py), so nothing
depends on a child living to report: an item an instance of a worker process takes has a slot in memory shared
with the parent until its outcome is on its way back (core/modes/child.py Slots), so when a process dies the
parent knows exactly what it held. Those items are dead-lettered as crashed (a poison item costs only itself,
after one delivery); the others it was sent (not taken yet, or finished with their outcome lost with the
process) go to a replacement, started at once. A process that dies before finishing or holding any item is not
replaced more than MAX_RESTARTS times in a row.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import time
from collections.abc import Callable
from typing import Any, Final

from core.api.worker import BatchWorker, flushes, holds, is_async
from core.modes.child import ChildSpec
from core.modes.unit import Unit
from core.pipeline.imports import preload_modules
from core.pipeline.yaml_lines import plain
from core.transport.base import Delivery

logger = logging.getLogger(__name__)

START_METHOD: Final = "forkserver"  # never fork a process that has threads


class ProcessRunner:
    """A group's instances in `processes` worker processes, `instances` in each (threads or asyncio tasks)."""

    def __init__(
        self,
        group: Any,
        cls: type,
        *,
        exits: Any,
        pipeline_path: str,
        on_exit: Callable[[Any], None] = lambda unit: None,
    ) -> None:
        self.group = group
        self.cls = cls
        self.exits = exits  # how the items the processes report on leave: core/run/exits.py or core/run/redis_exits.py
        spec = group.spec
        self.inner = "async" if is_async(cls) else "threads"
        self.mode = f"processes ({spec.processes} x {spec.instances} {self.inner})"
        self.size = spec.processes * spec.instances
        self.pipeline_path = pipeline_path
        self.on_exit = on_exit
        self.first = cls(group=group, index=0, **spec.params)  # its params refused here, before anything starts
        # What the worker processes are sent: plain values, so that they never load the config stack (PyYAML).
        self.worker_spec = dataclasses.replace(
            spec, **{field.name: plain(getattr(spec, field.name)) for field in dataclasses.fields(spec)}
        )
        self.batch_size = holds(self.first)  # items an instance may hold processed and unsettled
        self.batching = issubclass(cls, BatchWorker) or flushes(cls)  # its units hold items until stored
        # Items in flight at most, per unit: from 2 per instance (a slow stage's items stay spread over its
        # processes) doubling whenever the process runs out of work while more waits (a fast stage gets big
        # batches); a batching sink's instances must be able to fill their batches (a flushing one's, its
        # flush_every).
        self.window = spec.instances * (self.batch_size + 1 if self.batching else 2)
        self.stopping = False
        self.stop_message = ("stop", False)
        self.context = multiprocessing.get_context(START_METHOD)
        self.units = [Unit(self, number) for number in range(spec.processes)]
        self.instances = self.units
        self.readers = len(self.units)  # each process takes one DONE from the group's input

    def open_group(self) -> None:
        """Let instance 0, built here, open the group."""
        self.first.open_group()

    def start(self) -> None:
        """Start every worker process (workers are built in them from the spec, never forked)."""
        modules = [
            "core.modes.child",
            "core.run.loop",
            "core.modes.threads",
            self.group.spec.location,
            *preload_modules(type(self.first)),
        ]
        if self.inner == "async":
            modules.append("core.modes.tasks")  # and with it asyncio, which a threads-only runner never loads
        self.context.set_forkserver_preload(modules)  # imported once in the fork server, not per process
        for unit in self.units:
            unit.start()

    def child_spec(self, unit: int) -> ChildSpec:
        """What worker process `unit` is started with (the log level and the output queues as they are now)."""
        return ChildSpec(
            worker=self.worker_spec,
            pipeline_path=self.pipeline_path,
            unit=unit,
            log_level=logging.getLogger().getEffectiveLevel(),
            mode=self.inner,
            json_outputs=any(getattr(queue, "is_redis", False) for queue in self.group.outputs),
        )

    def alive(self) -> int:
        """Instances in worker processes that are running."""
        return sum(self.group.spec.instances for unit in self.units if unit.process is not None and not unit.finished)

    def join(self, timeout_s: float) -> bool:
        """Wait for every worker process and its threads, `timeout_s` in all; kill what is left after it."""
        deadline = time.monotonic() + timeout_s
        for unit in self.units:
            unit.join(deadline)
        return all(unit.finished or unit.process is None for unit in self.units)

    def in_hand(self) -> list[Delivery]:
        """What the units hold is theirs (group.instances lists them)."""
        return []

    def stop(self, close_input: bool) -> None:
        """Tell every worker process the run is stopping: its batch retries stop waiting, and with
        `close_input` (not a sink) the items it was sent and no instance took are dead-lettered."""
        self.stopping = True
        self.stop_message = ("stop", close_input)
        for unit in self.units:
            unit.send_message(self.stop_message)
