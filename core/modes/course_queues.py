"""The queues a course-style worker (core.modes.course) is given: queue.Queue's methods over the runner's bounded
queues, so the course's `get(timeout=...)`, `put`, `qsize`, `empty` and the string 'DONE' work as it expects."""

from __future__ import annotations

import queue
import time
from typing import Any, Protocol

from core.run.ledger import Counts
from core.transport.base import Queue, QueueWriter


class CourseInstance(Protocol):
    """What the adapters need of the instance they serve (core.modes.course.CourseInstance)."""

    counts: Counts

    def take(self, timeout_s: float | None, block: bool) -> Any:
        """The next item or 'DONE'; queue.Empty after `timeout_s` of nothing."""

    def pending(self) -> int:
        """Items waiting, a pending end counting as one."""

    def waiting(self) -> bool:
        """Whether a get() would return at once (the end counts)."""


#: What a course-style worker reads where the runner's own DONE would be, and what it may put itself.
COURSE_DONE = "DONE"
#: How often a put with a timeout looks for room again.
PUT_POLL_S = 0.05


class CourseInbox:
    """The `input_queue` a course-style worker gets: queue.Queue's methods over the group's input queue,
    with the string 'DONE' where the runner's DONE is."""

    def __init__(self, inbox: Queue, instance: CourseInstance) -> None:
        self._inbox = inbox
        self._instance = instance

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The next item or 'DONE'; queue.Empty after `timeout` seconds of nothing (as queue.Queue)."""
        return self._instance.take(timeout, block)

    def get_nowait(self) -> Any:
        """get(block=False)."""
        return self.get(block=False)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put an item back on its own input; 'DONE' is dropped: the runner sends one per reader itself."""
        if not _is_done(item):
            _put(self._inbox, item, block, timeout)

    def qsize(self) -> int:
        """Items waiting (a pending end counts as one, as 'DONE' would in a queue.Queue)."""
        return self._instance.pending()

    def empty(self) -> bool:
        """True when a get() would wait."""
        return not self._instance.waiting()

    def full(self) -> bool:
        """True when a put() would wait."""
        return self._inbox.qsize() >= self._inbox.maxsize

    def task_done(self) -> None:
        """Nothing to do: the ledger settles an item when the next one is asked for."""


class CourseOutbox:
    """One `output_queue` of a course-style worker: put() into a group's output queue, counted as emitted."""

    def __init__(self, outbox: Queue, instance: CourseInstance) -> None:
        self._outbox = outbox
        self._instance = instance

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put one output (waiting while the queue is full); 'DONE' is dropped: the runner sends the ends."""
        if _is_done(item):
            return
        self._instance.counts.blocked_s += _put(self._outbox, item, block, timeout)
        self._instance.counts.emitted += 1

    def put_nowait(self, item: Any) -> None:
        """put(block=False)."""
        self.put(item, block=False)

    def qsize(self) -> int:
        """Items waiting in the queue."""
        return self._outbox.qsize()

    def empty(self) -> bool:
        """True when nothing waits in the queue."""
        return self._outbox.qsize() == 0

    def full(self) -> bool:
        """True when a put() would wait."""
        return self._outbox.qsize() >= self._outbox.maxsize

    def task_done(self) -> None:
        """Nothing to do (see CourseInbox.task_done)."""


def _is_done(item: Any) -> bool:
    return isinstance(item, str) and item == COURSE_DONE


def _put(target: QueueWriter, item: Any, block: bool, timeout_s: float | None) -> float:
    """queue.Queue.put on a LocalQueue: wait for room (or raise queue.Full); return the seconds waited."""
    if target.put_nowait(item) is not None:
        return 0.0
    if not block:
        raise queue.Full
    started = time.perf_counter()
    if timeout_s is None:
        target.put(item)
        return time.perf_counter() - started
    deadline = time.monotonic() + timeout_s
    while target.put_nowait(item) is None:
        if time.monotonic() >= deadline:
            raise queue.Full
        time.sleep(PUT_POLL_S)  # LocalQueue has no timed put; course code rarely gives a put timeout
    return time.perf_counter() - started
