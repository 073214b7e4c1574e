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

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.modes.course_queues import COURSE_DONE, CourseInbox, CourseOutbox
from core.run.ledger import Counts
from core.transport.base import DONE, Delivery, Empty, Queue

if TYPE_CHECKING:
    from core.run.group import WorkerGroup

logger = logging.getLogger(__name__)


class CourseInstance:
    """One course-style thread and its ledger; the adapters report to it from that thread."""

    batching = False

    def __init__(self, name: str, group: WorkerGroup, on_exit: Callable[[CourseInstance], None]) -> None:
        self.name = name
        self.group = group
        self.inbox: Queue = group.input
        self.counts = Counts()
        self.crash: BaseException | None = None
        self.finished = False
        self.thread: threading.Thread | None = None
        self.launched = False  # its thread was started: from then on, its run() ends the instance
        self.values: list[Delivery] = []  # a source's input values, in hand until its run() returns
        self.ended_input = False  # it was handed 'DONE': every later get() says so again
        self._on_exit = on_exit
        self._lock = threading.Lock()  # in_hand() is read from other threads
        self._given_up = False  # a forced exit recorded what it held
        self._current: Delivery | None = None
        self._peeked: Delivery | None = None  # taken by empty()/qsize() to answer them, not yet by get()
        self._taken_at = 0.0

    def in_hand(self) -> list[Delivery]:
        """The item it took last and has not finished, one it looked at but did not take, a source's values."""
        with self._lock:
            return [d for d in (self._current, self._peeked) if d is not None] + list(self.values)

    def give_up(self) -> list[Delivery]:
        """For a forced exit: what it holds, for the exit to record; from now on it counts nothing it finishes."""
        with self._lock:
            left = [d for d in (self._current, self._peeked) if d is not None] + list(self.values)
            self._current = self._peeked = None
            self.values = []
            self._given_up = True
        return left

    # --- from the worker's thread ------------------------------------------------------------------

    def take(self, timeout_s: float | None, block: bool) -> Any:
        """The next item for the worker, or COURSE_DONE; raise queue.Empty as queue.Queue does."""
        self._settle()
        if self.ended_input:
            return COURSE_DONE
        with self._lock:
            delivery, self._peeked = self._peeked, None
        if delivery is None:
            try:
                delivery = self.inbox.get(timeout_s if block else 0)
            except Empty:
                raise queue.Empty from None
            if delivery is not DONE:
                self.counts.received += 1
        if delivery is DONE:
            self.ended_input = True
            return COURSE_DONE
        with self._lock:
            self._current = delivery
        self._taken_at = time.perf_counter()
        return delivery.item

    def pending(self) -> int:
        """qsize() as the worker sees it: a pending end counts as one item, as 'DONE' in a queue.Queue would."""
        if not self.waiting():
            return 0
        return max(self.inbox.qsize() + (self._peeked is not None), 1)

    def waiting(self) -> bool:
        """Whether a get() would return at once. A DONE counts, as 'DONE' in a queue.Queue would: a worker
        that loops on `if not q.empty()` must see it, so the end is taken (and kept) to answer."""
        if self.ended_input or self._peeked is not None or self.inbox.qsize():
            return True
        try:
            delivery = self.inbox.get(0)
        except Empty:
            return False
        if delivery is DONE:
            self.ended_input = True
        else:
            self.counts.received += 1
            with self._lock:
                self._peeked = delivery
        return True

    def began(self, thread: threading.Thread) -> None:
        """Its run() starts: its log lines carry the instance's name; a source's values are now received."""
        self.thread = thread
        thread.name = self.name
        self.counts.received += len(self.values)

    def returned(self) -> None:
        """Its run() returned: the last item taken and a source's values are done with."""
        self._settle()
        with self._lock:
            self.counts.processed += len(self.values)
            self.values = []

    def crashed(self, exc: BaseException) -> None:
        """Its run() raised: what it holds stays in flight, reported as unaccounted."""
        self.crash = exc
        held = self.in_hand()
        logger.error(
            "%s crashed (%s: %s); a course-style worker's item cannot be recovered: %d item(s) it "
            "held are reported as unaccounted%s",
            self.name,
            type(exc).__name__,
            exc,
            len(held),
            f": {[d.item for d in held]!r}" if held else "",
            exc_info=exc,
        )

    def refused(self, exc: Exception) -> None:
        """Its class raised while being built. Not started: nothing was taken, a source's values are
        dead-lettered as not started, and the instance ends. Started: its run() goes on and ends it."""
        self.crash = exc
        logger.error(
            "%s: %s(**kwargs) raised %s: %s",
            self.name,
            self.group.spec.class_name,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        if self.launched:
            return
        with self._lock:
            values, self.values = self.values, []
        self.group.abandon(
            [d.item for d in values], f"not started: {type(exc).__name__}: {exc}", kind="not-started", received=True
        )
        self.end()

    def end(self) -> None:
        """Record an item looked at but never taken, then tell the executor this instance ended."""
        with self._lock:
            peeked, self._peeked = self._peeked, None
        if peeked is not None:
            kind = "crashed" if self.crash else "stopping"
            written = self.group.dead_letters.write(
                group=self.group.name,
                item=peeked.item,
                kind=kind,
                error="not processed: the course-style worker ended before it took this item",
            )
            if written:
                self.counts.dead_lettered += 1
            else:
                self.counts.unrecorded += 1
            self.inbox.ack(peeked)
        self.finished = True
        self._on_exit(self)

    def _settle(self) -> None:
        with self._lock:
            current, self._current = self._current, None
            if self._given_up:
                return
        if current is not None:
            self.counts.processed += 1
            self.counts.busy_s += time.perf_counter() - self._taken_at
            self.inbox.ack(current)


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
