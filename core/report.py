"""What a run did: counts per worker group and per queue, how it ended, and the exit code that says so."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from core.bottleneck import QueueLoad, StageLoad, hints
from core.ledger import Counts

if TYPE_CHECKING:
    from core.channel import Channel
    from core.config import PipelineSpec
    from core.group import WorkerGroup
    from core.ledger import DeadLetters

EXIT_OK = 0
EXIT_ITEMS_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run of the same pipeline holds the lock; try again later


@dataclass
class GroupReport:
    """Final counts of one worker group; received == processed + dead_lettered when nothing was lost."""

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


@dataclass
class QueueReport:
    """Final counts of one queue."""

    name: str
    maxsize: int
    put: int
    taken: int
    left: int
    high_water: int
    full_pct: float = 0.0  # share of samples at 90% of maxsize or more
    nonempty_pct: float = 0.0
    mean_size: float = 0.0


@dataclass
class RunReport:
    """The end of a run, as printed in the summary and written by --stats-json."""

    pipeline: str
    finish_reason: str  # finished | interrupted | failed | config-error
    duration_s: float
    groups: list[GroupReport] = field(default_factory=list)
    queues: list[QueueReport] = field(default_factory=list)
    dead_letter_path: str | None = None
    dead_letters: int = 0
    error: str | None = None
    signal: int | None = None
    hints: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 all items handled; 1 some failed, a worker crashed or the run could not start; 2 bad config;
        128 + signal number when stopped by a signal."""
        if self.finish_reason == "config-error":
            return EXIT_CONFIG
        if self.signal is not None:
            return 128 + self.signal
        if self.finish_reason != "finished" or self.dead_letters or self.lost:
            return EXIT_ITEMS_FAILED
        if any(group.crashed for group in self.groups):
            return EXIT_ITEMS_FAILED
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
        """One line for the end of the log."""
        stages = ", ".join(_stage(group) for group in self.groups)
        letters = (f"{self.dead_letters} dead letters in {self.dead_letter_path}" if self.dead_letters
                   else "no dead letters")
        lost = f"; {self.lost} ITEMS UNACCOUNTED FOR" if self.lost else ""
        error = f" ({self.error})" if self.error else ""
        return (f"{self.pipeline}: {self.finish_reason}{error} in {self.duration_s:.1f}s; {stages}; "
                f"{letters}{lost}; exit {self.exit_code}")


    def table(self) -> str:
        """The end-of-run report: a row per worker group and per queue, then the hints."""
        rows = [f"{'group':<24}{'inst':>5}{'received':>10}{'emitted':>9}{'stored':>8}{'failed':>8}"
                f"{'dead':>6}{'busy%':>7}{'items/s':>9}"]
        rows += [f"{g.name:<24}{g.instances:>5}{g.received:>10}{g.emitted:>9}{g.stored:>8}{g.failed:>8}"
                 f"{g.dead_lettered:>6}{g.busy_pct:>7.0f}{g.items_per_s:>9.1f}" for g in self.groups]
        rows.append(f"{'queue':<24}{'max':>5}{'put':>10}{'taken':>9}{'high':>8}{'full%':>8}{'nonempty%':>11}")
        rows += [f"{q.name:<24}{q.maxsize:>5}{q.put:>10}{q.taken:>9}{q.high_water:>8}{q.full_pct:>8.0f}"
                 f"{q.nonempty_pct:>11.0f}" for q in self.queues]
        rows += [f"hint: {hint}" for hint in self.hints]
        return "\n".join(rows)


def _stage(group: GroupReport) -> str:
    done = f"{group.received} in, {f'stored {group.stored}' if group.sink else f'{group.emitted} out'}"
    failed = f", {group.dead_lettered} dead-lettered" if group.dead_lettered else ""
    crashed = f", {group.crashed} crashed" if group.crashed else ""
    return f"{group.name} {done}{failed}{crashed}"


class Snapshot(NamedTuple):
    """A run in progress: per group (name, alive, instances, counts), per queue (name, size, maxsize),
    and progress: `total` items from the sources once they have all ended, `settled` at the sinks."""

    elapsed_s: float
    groups: list[tuple[str, int, int, Counts]]
    queues: list[tuple[str, int, int]]
    total: int | None
    settled: int


def build_report(spec: PipelineSpec, groups: Iterable[WorkerGroup], channels: Iterable[Channel],
                 loads: dict[str, QueueLoad], *, reason: str, error: str | None, duration_s: float,
                 dead_letters: DeadLetters, signal: int | None) -> RunReport:
    """The RunReport of a finished run, with the bottleneck hints."""
    group_reports, stages = [], []
    for group in groups:
        counts, instances = group.counts(), len(group.workers)
        busy = (counts.busy_s - counts.blocked_s) / (instances * duration_s) if duration_s > 0 else 0.0
        rate = counts.processed / duration_s if duration_s > 0 else 0.0
        group_reports.append(GroupReport(
            name=group.name, instances=instances, sink=not group.outputs, crashed=group.crashed(),
            received=counts.received, processed=counts.processed, emitted=counts.emitted, stored=counts.stored,
            failed=counts.failed, dead_lettered=counts.dead_lettered, in_flight=counts.in_flight,
            busy_pct=round(100 * busy, 1), items_per_s=round(rate, 2)))
        stages.append(StageLoad(
            name=group.name, instances=instances, busy=busy, items_per_s=rate,
            input_queue=group.spec.input_queue, input_load=loads.get(group.spec.input_queue),
            requests_per_second=float(group.spec.params.get("requests_per_second") or 0)))
    queue_reports = []
    for channel in channels:
        load = loads[channel.name]
        queue_reports.append(QueueReport(
            name=channel.name, maxsize=channel.maxsize, put=channel.put_count, taken=channel.get_count,
            left=channel.qsize(), high_water=channel.high_water,
            full_pct=round(100 * load.fraction(load.full), 1), nonempty_pct=round(100 * load.fraction(load.nonempty), 1),
            mean_size=round(load.size_sum / load.samples, 1) if load.samples else 0.0))
    return RunReport(
        pipeline=spec.name, finish_reason=reason, duration_s=round(duration_s, 3), groups=group_reports,
        queues=queue_reports, dead_letter_path=str(dead_letters.path), dead_letters=dead_letters.count,
        error=error, signal=signal, hints=hints(stages) if reason == "finished" and _flowed(group_reports) else [])


def _flowed(groups: list[GroupReport]) -> bool:
    """Whether any item reached a sink; without that, load figures say nothing about capacity."""
    return any(g.received for g in groups if g.sink)
