"""Live status of a running pipeline: a rich table on a terminal, a plain log line every N seconds elsewhere."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.run.report import Snapshot

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 10.0


class Progress:
    """Items per second per group and the run's ETA, over the last RATE_WINDOW_S seconds."""

    def __init__(self) -> None:
        self._history: deque[tuple[float, dict[str, int], int]] = deque()

    def update(self, snap: Snapshot) -> tuple[dict[str, float], float | None]:
        """(items/s by group, seconds left or None) after adding this snapshot."""
        done = {name: counts.processed + counts.dead_lettered for name, _, _, counts in snap.groups}
        if not self._history:  # the run started from nothing: the first line already has a rate
            self._history.append((0.0, {name: 0 for name in done}, 0))
        self._history.append((snap.elapsed_s, done, snap.settled))
        while len(self._history) > 2 and snap.elapsed_s - self._history[0][0] > RATE_WINDOW_S:
            self._history.popleft()
        then, done_then, settled_then = self._history[0]
        span = snap.elapsed_s - then
        if span <= 0:
            return {name: 0.0 for name in done}, None
        rates = {name: (done[name] - done_then.get(name, 0)) / span for name in done}
        settled_rate = (snap.settled - settled_then) / span
        eta = None
        if snap.total is not None and snap.settled < snap.total and settled_rate > 0:
            eta = (snap.total - snap.settled) / settled_rate
        return rates, eta


def status_line(snap: Snapshot, rates: dict[str, float], eta: float | None) -> str:
    """One plain line: elapsed, each group's counts and rate, each queue's fill, progress. A group's items in
    are done, dead-lettered or still in hand; out is what it sent on."""
    groups = "; ".join(
        f"{name} {alive}/{instances} alive, {c.received} in, {c.processed} done, {c.dead_lettered} dead-lettered, "
        f"{c.emitted} out, {c.failed} failed, {rates.get(name, 0):.1f}/s"
        for name, alive, instances, c in snap.groups
    )
    queues = ", ".join(f"{name} {size}/{maxsize}" for name, size, maxsize in snap.queues)
    return f"status {snap.elapsed_s:.0f}s: {groups}; queues {queues}; {_progress(snap, eta)}"


def status_table(snap: Snapshot, rates: dict[str, float], eta: float | None) -> Group:
    """The live view: a table of groups, a table of queues, and the progress line."""
    groups = Table(title=f"pipeline running for {snap.elapsed_s:.0f}s", title_justify="left")
    for column in ("group", "alive", "received", "done", "dead-lettered", "emitted", "failed", "items/s"):
        groups.add_column(column, justify="left" if column == "group" else "right")
    for name, alive, instances, counts in snap.groups:
        groups.add_row(
            name,
            f"{alive}/{instances}",
            str(counts.received),
            str(counts.processed),
            str(counts.dead_lettered),
            str(counts.emitted),
            str(counts.failed),
            f"{rates.get(name, 0):.1f}",
        )
    queues = Table()
    for column in ("queue", "size", "fill"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for name, size, maxsize in snap.queues:
        queues.add_row(name, f"{size}/{maxsize}", f"{100 * size / maxsize:.0f}%")
    return Group(groups, queues, Text(_progress(snap, eta)))


def _progress(snap: Snapshot, eta: float | None) -> str:
    """'1759/1859 done (95%): 100 stored, 1659 dead-lettered': done counts both, said apart."""
    apart = f"{snap.stored} stored, {snap.dead_lettered} dead-lettered"
    if snap.total is None:
        return f"{snap.settled} done ({apart}), total not known yet"
    percent = 100 * snap.settled / snap.total if snap.total else 100.0
    left = f", about {eta:.0f}s left" if eta is not None else ""
    return f"{snap.settled}/{snap.total} done ({percent:.0f}%): {apart}{left}"


class StatusReporter(threading.Thread):
    """Shows `snapshot()` every interval: live on a terminal (`console`), else as a log line."""

    def __init__(self, snapshot: Callable[[], Snapshot], *, console: Console | None, interval_s: float) -> None:
        super().__init__(name="StatusReporter", daemon=True)
        self.snapshot = snapshot
        self.console = console
        self.interval_s = interval_s
        self.progress = Progress()
        self._finish = threading.Event()

    def run(self) -> None:
        if self.console is None:
            while not self._finish.wait(self.interval_s):
                snap = self.snapshot()
                logger.info("%s", status_line(snap, *self.progress.update(snap)))
            return
        with Live(console=self.console, refresh_per_second=4, transient=True) as live:
            while True:
                snap = self.snapshot()
                live.update(status_table(snap, *self.progress.update(snap)))
                if self._finish.wait(self.interval_s):
                    return

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the display and wait for the thread."""
        self._finish.set()
        self.join(timeout_s)
