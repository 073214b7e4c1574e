"""Course-style workers: `threading.Thread` subclasses written the way the course "Concurrent Programming in
Python" writes them, run by the executor next to the runner's own workers, in the same pipeline.

Such a class is built with keyword arguments (`input_queue`, `output_queue`, `input_values` and the group's
params), usually starts itself in `__init__`, loops on `input_queue.get(timeout=...)` until it gets the
string 'DONE', and puts each output on every output queue. Here its queues are adapters over the group's
bounded queues (CourseInbox, CourseOutbox), so DONE per reader, closing and dead-lettering stay the
executor's, and the ledger counts what the worker takes and puts.

What the runner cannot promise for a loop it does not own, and how it reports it instead:
- an item counts as processed when the worker asks for its next one (or its run() returns), whatever it
  did with it; an item it holds when its run() raises is in flight for good: the report counts it as
  unaccounted (lost), and the run exits 1;
- a source's input values count as received when its thread starts and processed when run() returns;
  a crash leaves them all unaccounted;
- it cannot be told to stop: once its input queue is closed (a stop, or its group ended) the adapter
  hands it 'DONE'.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.modes.course_instance import CourseInstance
from core.modes.course_queues import CourseInbox, CourseOutbox
from core.transport.base import DONE, Delivery, Empty

if TYPE_CHECKING:
    from core.run.group import WorkerGroup


class CourseRunner:
    """Runs a course-style class: one thread per instance, each the class itself, built when the run starts."""

    mode = "threads"

    def __init__(self, group: WorkerGroup, cls: type, *, on_exit: Callable[[Any], None]) -> None:
        self.group = group
        self.cls = cls
        self.instances = [
            CourseInstance(f"{group.name}-{index}", group, on_exit) for index in range(group.spec.instances)
        ]
        self.size = self.readers = len(self.instances)  # instances; DONEs its input needs

    def open_group(self) -> None:
        """A course-style class has no group-wide start: nothing to open."""

    def start(self) -> None:
        """Build each instance (the class may start itself; if not, it is started here)."""
        values = self._drain_values() if self.group.is_source else []
        for index, instance in enumerate(self.instances):
            kwargs = dict(self.group.spec.params)
            kwargs["output_queue"] = [CourseOutbox(q, instance) for q in self.group.outputs] or None
            if self.group.is_source:
                instance.values = values[index :: len(self.instances)]  # each value goes to one instance
                kwargs["input_queue"] = None
                kwargs["input_values"] = [delivery.item for delivery in instance.values]
            else:
                kwargs["input_queue"] = CourseInbox(self.group.input, instance)
            self._launch(instance, kwargs)

    def alive(self) -> int:
        """How many instances are running."""
        return sum(1 for i in self.instances if i.thread is not None and i.thread.is_alive() and not i.finished)

    def join(self, timeout_s: float | None) -> bool:
        """Wait for every instance, `timeout_s` in all (None: as long as it takes); True when none is left running."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for instance in self.instances:
            if instance.thread is not None and instance.thread.ident is not None:
                instance.thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        return not any(i.thread is not None and i.thread.is_alive() for i in self.instances)

    def in_hand(self) -> list[Delivery]:
        """Nothing beyond what the instances hold."""
        return []

    def stop(self, close_input: bool) -> None:
        """A course-style worker cannot be told to stop: its input, once closed, hands it 'DONE'."""

    def _drain_values(self) -> list[Delivery]:
        values: list[Delivery] = []
        while True:
            try:
                delivery = self.group.input.get(0)
            except Empty:
                return values
            if delivery is DONE:
                return values
            values.append(delivery)

    def _launch(self, instance: CourseInstance, kwargs: dict[str, Any]) -> None:
        try:
            thread = _tracked(self.cls, instance)(**kwargs)
            if thread.ident is None:  # the class did not start itself
                thread.start()
        except Exception as exc:  # noqa: BLE001 - it refused its arguments, failed after starting, or could not start
            instance.refused(exc)


def _tracked(cls: type, instance: CourseInstance) -> type:
    """A subclass of `cls` whose run() reports to `instance` and whose thread is a daemon, so a course
    thread stuck in a call without timeout cannot keep the process alive after the run has ended."""

    def run(self: threading.Thread) -> None:
        instance.began(self)
        try:
            super(tracked, self).run()  # type: ignore[arg-type]  # `tracked`: the class made below
        except BaseException as exc:  # recorded and logged: the thread ends here either way
            instance.crashed(exc)
        else:
            instance.returned()
        finally:
            instance.end()

    def start(self: threading.Thread) -> None:
        if self.ident is None:
            self.daemon = True
        instance.thread = self
        super(tracked, self).start()  # type: ignore[arg-type]
        instance.launched = True  # start() returned: run() will be called, and it ends the instance

    tracked = type(
        cls.__name__,
        (cls,),
        {
            "run": run,
            "start": start,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
        },
    )
    return tracked
