"""Live status of a running pipeline: a rich table on a terminal, a plain log line every N seconds elsewhere."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.run.report import Snapshot

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 10.0


class Pace(NamedTuple):
    """How a run went lately: items/s and busy share (0..1) per group, and the seconds left (None: not known)."""

    rates: dict[str, float]
    busy: dict[str, float]
    eta_s: float | None


class Progress:
    """Items per second and busy share per group, and the run's ETA, over the last RATE_WINDOW_S seconds."""

    def __init__(self) -> None:
        self._history: deque[tuple[float, dict[str, int], dict[str, float], int]] = deque()

    def update(self, snap: Snapshot) -> Pace:
        """The pace after adding this snapshot."""
        done = {row.name: row.counts.processed + row.counts.dead_lettered for row in snap.groups}
        # Time spent working, waits for a full output excluded (as the report's busy%).
        worked = {row.name: row.counts.busy_s - row.counts.blocked_s for row in snap.groups}
        if not self._history:  # the run started from nothing: the first line already has a rate
            self._history.append((0.0, dict.fromkeys(done, 0), dict.fromkeys(done, 0.0), 0))
        self._history.append((snap.elapsed_s, done, worked, snap.settled))
        while len(self._history) > 2 and snap.elapsed_s - self._history[0][0] > RATE_WINDOW_S:
            self._history.popleft()
        then, done_then, worked_then, settled_then = self._history[0]
        span = snap.elapsed_s - then
        if span <= 0:
            return Pace(dict.fromkeys(done, 0.0), dict.fromkeys(done, 0.0), None)
        rates = {name: (done[name] - done_then.get(name, 0)) / span for name in done}
        busy = {
            row.name: max(worked[row.name] - worked_then.get(row.name, 0.0), 0.0) / (span * row.instances)
            if row.instances
            else 0.0
            for row in snap.groups
        }
        settled_rate = (snap.settled - settled_then) / span
        eta = None
        if snap.total is not None and snap.settled < snap.total and settled_rate > 0:
            eta = (snap.total - snap.settled) / settled_rate
        return Pace(rates, busy, eta)


def status_line(snap: Snapshot, pace: Pace) -> str:
    """One plain line: elapsed, each group's counts and rate, each queue's fill, progress. A group's items in
    are done, dead-lettered or still in hand; out is what it sent on."""
    groups = "; ".join(
        f"{name} {alive}/{instances} alive, {c.received} in, {c.processed} done, {c.dead_lettered} dead-lettered, "
        f"{c.emitted} out, {c.failed} failed, {pace.rates.get(name, 0):.1f}/s"
        for name, alive, instances, c, _ in snap.groups
    )
    queues = ", ".join(
        f"{name} {size}/{maxsize}" + (f" ({pending} pending)" if pending else "")
        for name, size, pending, maxsize in snap.queues
    )
    return f"status {snap.elapsed_s:.0f}s: {groups}; queues {queues}; {_progress(snap, pace.eta_s)}"


def status_table(snap: Snapshot, pace: Pace) -> Group:
    """The live view: a table of groups, a table of queues, and the progress line."""
    groups = Table(title=f"pipeline running for {snap.elapsed_s:.0f}s", title_justify="left")
    columns = ("group", "mode", "alive", "received", "done", "dead-lettered", "emitted", "failed", "busy%", "items/s")
    for column in columns:
        groups.add_column(column, justify="left" if column in ("group", "mode") else "right")
    for name, alive, instances, counts, mode in snap.groups:
        groups.add_row(
            name,
            mode,
            f"{alive}/{instances}",
            str(counts.received),
            str(counts.processed),
            str(counts.dead_lettered),
            str(counts.emitted),
            str(counts.failed),
            f"{100 * pace.busy.get(name, 0):.0f}%",
            f"{pace.rates.get(name, 0):.1f}",
        )
    queues = Table()
    for column in ("queue", "size", "fill", "pending"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for name, size, pending, maxsize in snap.queues:  # pending: read and not settled, a Redis queue's
        queues.add_row(
            name, f"{size}/{maxsize}", f"{100 * size / maxsize:.0f}%", "" if pending is None else str(pending)
        )
    return Group(groups, queues, Text(_progress(snap, pace.eta_s)))


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
                logger.info("%s", status_line(snap, self.progress.update(snap)))
            return
        with Live(console=self.console, refresh_per_second=4, transient=True) as live:
            while True:
                snap = self.snapshot()
                live.update(status_table(snap, self.progress.update(snap)))
                if self._finish.wait(self.interval_s):
                    return

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the display and wait for the thread."""
        self._finish.set()
        self.join(timeout_s)
