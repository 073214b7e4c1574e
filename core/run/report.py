"""What a run did: counts per worker group and per queue, how it ended, and the exit code that says so."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from core.run.ledger import Counts

EXIT_OK = 0
EXIT_ITEMS_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run of the same pipeline holds the lock; try again later
#: How a run can end. finished: it ran to its end (exit 0, or 1 if items failed); interrupted: stopped by a
#: signal and drained (128 + signal); failed: it could not start, or ran and nothing reached a sink (1);
#: forced: a second signal or the shutdown watchdog exited at once, the items in hand dead-lettered first
#: (128 + signal); config-error: the pipeline file or a setting is wrong, nothing ran (2); locked: another
#: run of the same file holds the lock, nothing ran (75).
FINISH_REASONS = ("finished", "interrupted", "failed", "forced", "config-error", "locked")


@dataclass
class GroupReport:
    """Final counts of one worker group: received == processed + dead_lettered + returned + in_flight, and
    in_flight (received, then neither settled nor given back: lost) is 0 unless something went wrong."""

    name: str
    instances: int
    sink: bool
    crashed: int
    received: int
    processed: int
    emitted: int
    stored: int
    failed: int
    dead_lettered: int
    in_flight: int
    busy_pct: float = 0.0  # share of the run its instances spent working (waits for a full output excluded)
    items_per_s: float = 0.0
    stores: bool = False  # a batching or flushing sink: `stored` counts items written (a plain sink only processes)
    mode: str = "threads"  # how its instances ran: threads or async
    returned: int = 0  # taken, then given back to their queue (or to another owner) unsettled


@dataclass
class QueueReport:
    """Final counts of one queue: put + refused is what its producers emitted, put + preloaded == taken + left,
    and its reader group received taken + refused (see core.transport.local.LocalQueue)."""

    name: str
    maxsize: int
    put: int
    taken: int
    left: int
    high_water: int  # the most items waiting at once; above maxsize only by what was preloaded
    preloaded: int = 0  # put in by the runner beyond maxsize: a replay's items
    refused: int = 0  # offered after it was closed: dead-lettered by its reader group
    full_pct: float = 0.0  # share of samples at 90% of maxsize or more
    nonempty_pct: float = 0.0
    mean_size: float = 0.0


@dataclass
class RunReport:
    """The end of a run, as printed in the summary and written by --stats-json."""

    pipeline: str
    finish_reason: str  # one of FINISH_REASONS
    duration_s: float
    groups: list[GroupReport] = field(default_factory=list)
    queues: list[QueueReport] = field(default_factory=list)
    dead_letter_path: str | None = None
    dead_letters: int = 0
    dead_letter_write_errors: int = 0  # records the file refused: those items are lost, and the run fails
    error: str | None = None  # the first thing that went wrong, in one line
    signal: int | None = None
    #: Input values of the sources that no instance started (a run that never ran, or ended early);
    #: None when the pipeline file could not be read far enough to know them.
    not_started: int | None = 0
    hints: list[str] = field(default_factory=list)
    #: The dead letters by group, kind and error, the most frequent first (core.run.ledger.DeadLetters.grouped).
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: With Redis queues, from the process that reports the run: every process's counts, and each queue's ledger.
    run: dict | None = None
    #: The run over time (core/run/timeline.py Timeline.to_dict): per interval, per group and per queue.
    timeline: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        """0 all items handled; 1 some failed or were lost, a worker crashed or the run could not start;
        2 bad config; 75 another run holds the lock; 128 + signal number when stopped by a signal."""
        if self.finish_reason == "config-error":
            return EXIT_CONFIG
        if self.finish_reason == "locked":
            return EXIT_LOCKED
        if self.signal is not None:
            return 128 + self.signal
        if self.finish_reason != "finished" or self.dead_letters or self.lost or self.dead_letter_write_errors:
            return EXIT_ITEMS_FAILED
        if any(group.crashed for group in self.groups):
            return EXIT_ITEMS_FAILED
        if self.run and self.run["ledger"].get("dead letters in Redis", {}).get("added"):
            return EXIT_ITEMS_FAILED  # the process reporting a run says how the whole run went
        return EXIT_OK

    @property
    def lost(self) -> int:
        """Items neither processed nor dead-lettered, anywhere: not 0 means a bug, and the run fails."""
        return sum(group.in_flight for group in self.groups) + sum(queue.left for queue in self.queues)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the exit code and groups and queues keyed by name."""
        data = asdict(self)
        data["groups"] = {g.pop("name"): g for g in data["groups"]}
        data["queues"] = {q.pop("name"): q for q in data["queues"]}
        data["exit_code"] = self.exit_code
        data["lost"] = self.lost
        return data

    def summary(self) -> str:
        """One line for the end of the log (and stdout): how it ended and why, per group, the dead letters."""
        why = f" ({self.error})" if self.error else ""
        if not self.groups:  # it never ran
            # A config error ran nothing, by its nature: its input values "not started" would be noise.
            noise = not self.not_started or self.finish_reason == "config-error"
            waiting = "" if noise else f"; {self.not_started} input value(s) not started"
            return f"{self.pipeline}: {self.finish_reason}{why}; nothing was run{waiting}; exit {self.exit_code}"
        stages = ", ".join(_stage(group) for group in self.groups)
        letters = (
            f"{self.dead_letters} dead letters in {self.dead_letter_path}" if self.dead_letters else "no dead letters"
        )
        if self.dead_letter_write_errors:
            letters += f"; {self.dead_letter_write_errors} DEAD LETTERS COULD NOT BE WRITTEN (see the log)"
        lost = f"; {self.lost} ITEMS UNACCOUNTED FOR" if self.lost else ""
        return (
            f"{self.pipeline}: {self.finish_reason}{why} in {self.duration_s:.1f}s; {stages}; "
            f"{letters}{lost}{_run_summary(self.run)}; exit {self.exit_code}"
        )

    def table(self) -> str:
        """The end-of-run report: a row per worker group and per queue, then the hints."""
        rows = [
            f"{'group':<24}{'inst':>5}{'received':>10}{'done':>8}{'dead':>8}{'emitted':>9}{'stored':>8}"
            f"{'failed':>8}{'busy%':>7}{'items/s':>9}"
        ]
        rows += [
            f"{g.name:<24}{g.instances:>5}{g.received:>10}{g.processed:>8}{g.dead_lettered:>8}{g.emitted:>9}"
            f"{g.stored:>8}{g.failed:>8}{g.busy_pct:>7.0f}{g.items_per_s:>9.1f}"
            for g in self.groups
        ]
        rows.append(
            f"{'queue':<24}{'max':>5}{'put':>10}{'preloaded':>10}{'refused':>8}{'taken':>9}{'left':>6}"
            f"{'high':>8}{'full%':>7}{'nonempty%':>10}"
        )
        rows += [
            f"{q.name:<24}{q.maxsize:>5}{q.put:>10}{q.preloaded:>10}{q.refused:>8}{q.taken:>9}{q.left:>6}"
            f"{q.high_water:>8}{q.full_pct:>7.0f}{q.nonempty_pct:>10.0f}"
            for q in self.queues
        ]
        rows += [f"hint: {hint}" for hint in self.hints]
        if self.run:
            rows.append(f"run {self.run['run_id']}, per process (host:pid, the groups it ran):")
            rows += [
                f"  process {proc} ({', '.join(report['groups'])}): "
                f"{_run_groups(report['groups'], self.run.get('sinks', []))}"
                for proc, report in self.run["processes"].items()
            ]
        if self.errors:
            rows.append("errors (count, group, first item, first error):")
            rows += [
                f"  {e['count']} x {e['group']} {e['kind']}, first {e['first_item']!r}: {e['error']}"
                for e in self.errors
            ]
        return "\n".join(rows)


def _run_summary(run: dict | None) -> str:
    """'; run R over 3 processes: G 503 in, ...; queues: Q 503 added, 0 left' for the reporting process."""
    if not run:
        return ""
    groups = _run_groups(run["groups"], run.get("sinks", []))
    queues = ", ".join(f"{name} {q['added']} added, {q.get('left', 0)} left" for name, q in run["ledger"].items())
    late = f" ({len(run['unfinished'])} process(es) had not finished)" if run["unfinished"] else ""
    return f"; run {run['run_id']} over {len(run['processes'])} process(es){late}: {groups}; queues: {queues}"


def _run_groups(groups: dict[str, dict[str, float]], sinks: list[str]) -> str:
    """'G 503 in, 503 out, S stored 503': each group's counts summed over processes, in _stage's words."""
    parts = []
    for name, c in groups.items():
        if name not in sinks:
            went = f"{int(c['received'] - c['returned'])} in, {int(c['emitted'])} out"
        elif c.get("stored"):
            went = f"stored {int(c['stored'])}"
        else:
            went = f"{int(c['received'] - c['returned'])} in, {int(c['processed'])} done"
        parts.append(f"{name} {went}" + (f", {int(c['dead_lettered'])} dead-lettered" if c["dead_lettered"] else ""))
    return ", ".join(parts)


def _stage(group: GroupReport) -> str:
    """'G 503 in, 501 done, 2 dead-lettered, 501 out': what it received, then where each item went (they add
    up to what it received), then what it sent on."""
    done = f"stored {group.stored}" if group.stores else f"{group.processed} done"
    parts = [f"{group.received} in", done]
    parts += [
        f"{count} {what}"
        for count, what in (
            (group.dead_lettered, "dead-lettered"),
            (group.returned, "returned"),
            (group.in_flight, "unaccounted for"),
        )
        if count
    ]
    if not group.sink:
        parts.append(f"{group.emitted} out")
    if group.crashed:
        parts.append(f"{group.crashed} crashed")
    return f"{group.name} {', '.join(parts)}"


class GroupRow(NamedTuple):
    """A group in a snapshot: how many of its instances are alive, its counts so far, where it runs."""

    name: str
    alive: int
    instances: int
    counts: Counts
    mode: str


class Snapshot(NamedTuple):
    """A run in progress: per group (name, alive, instances, counts), per queue (name, size, maxsize),
    and progress: `total` items into the pipeline (what the sources emitted once they have all ended, and what
    a replay put in), `settled` of them done with: stored by a sink, or `dead_lettered` on the way."""

    elapsed_s: float
    groups: list[GroupRow]
    queues: list[tuple[str, int, int | None, int]]  # name, waiting, read and not settled (a Redis queue), maxsize
    total: int | None
    settled: int
    dead_lettered: int = 0  # of the settled: the rest were stored

    @property
    def stored(self) -> int:
        """Settled items that a sink stored (processed)."""
        return self.settled - self.dead_lettered
