"""One course-style thread as the runner sees it: what it holds, what it has done, how it ended.

The adapters of core/modes/course_queues.py report to it from the worker's thread (take, pending, waiting);
the tracked run() of core/modes/course.py tells it the thread began, returned or crashed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.modes.course_queues import COURSE_DONE
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
