"""The numbers of a run read off its groups and queues: the report at its end (with the bottleneck hints), and
the snapshot of a run in progress for the live status."""

from __future__ import annotations

from collections.abc import Iterable

from core.http.policy import offline_replay
from core.pipeline.config import PipelineSpec
from core.run.bottleneck import UPSTREAM_BUSY_FLOOR, QueueLoad, StageLoad, hints
from core.run.group import WorkerGroup
from core.run.ledger import DeadLetters
from core.run.report import GroupReport, GroupRow, QueueReport, RunReport, Snapshot
from core.transport.base import Queue, run_size


def build_report(
    spec: PipelineSpec,
    groups: Iterable[WorkerGroup],
    queues: Iterable[Queue],
    loads: dict[str, QueueLoad],
    *,
    reason: str,
    error: str | None,
    duration_s: float,
    dead_letters: DeadLetters,
    signal: int | None,
    not_started: int = 0,
) -> RunReport:
    """The RunReport of a run, with the bottleneck hints. A run that went to its end but got nothing to
    a sink while items failed or a group crashed is `failed`, with the first error as the reason."""
    group_reports, stages, crashes = [], [], []
    could_give: dict[str, float] = {}
    groups = list(groups)
    for group in groups:
        counts, instances = group.counts(), group.runner.size
        busy = (counts.busy_s - counts.blocked_s) / (instances * duration_s) if duration_s > 0 and instances else 0.0
        rate = counts.processed / duration_s if duration_s > 0 else 0.0
        crashes += [f"{i.name} crashed: {type(i.crash).__name__}: {i.crash}" for i in group.instances if i.crash]
        group_reports.append(
            GroupReport(
                name=group.name,
                instances=instances,
                sink=not group.outputs,
                crashed=group.crashed(),
                received=counts.received,
                processed=counts.processed,
                emitted=counts.emitted,
                stored=counts.stored,
                failed=counts.failed,
                dead_lettered=counts.dead_lettered,
                in_flight=counts.in_flight,
                busy_pct=round(100 * busy, 1),
                items_per_s=round(rate, 2),
                stores=any(i.batching or getattr(i, "flushing", False) for i in group.instances),
                mode=group.mode,
                returned=counts.returned,
            )
        )
        stages.append(
            StageLoad(
                name=group.name,
                instances=instances,
                busy=busy,
                items_per_s=rate,
                input_queue=group.spec.input_queue,
                input_load=loads.get(group.spec.input_queue) if group.spec.input_queue else None,
                requests_per_second=float(group.spec.params.get("requests_per_second") or 0),
                processes=group.spec.processes or 0,
            )
        )
        # What it could have sent on, had it never waited for a full output (a burst source: many times more).
        could_give[group.name] = (counts.emitted / duration_s if duration_s > 0 else 0.0) / max(
            busy, UPSTREAM_BUSY_FLOOR
        )
    for stage in stages:
        writers = [g.name for g in groups if stage.input_queue and stage.input_queue in g.spec.output_queues]
        if writers:
            stage.upstream, stage.upstream_rate = " and ".join(writers), sum(could_give[name] for name in writers)
    queue_reports = []
    for queue in queues:
        load = loads[queue.name]
        queue_reports.append(
            QueueReport(
                name=queue.name,
                maxsize=queue.maxsize,
                put=queue.put_count,
                taken=queue.get_count,
                left=queue.qsize(),
                high_water=queue.high_water,
                preloaded=getattr(queue, "preloaded", 0),
                refused=getattr(queue, "refused", 0),
                full_pct=round(100 * load.fraction(load.full_s), 1),
                nonempty_pct=round(100 * load.fraction(load.nonempty_s), 1),
                mean_size=round(load.mean_size(), 1),
            )
        )
    flowed = any(g.received for g in group_reports if g.sink)
    if reason == "finished" and not flowed and (dead_letters.first_error or crashes):
        reason, error = "failed", error or dead_letters.first_error or crashes[0]
    report = RunReport(
        pipeline=spec.name,
        finish_reason=reason,
        duration_s=round(duration_s, 3),
        groups=group_reports,
        queues=queue_reports,
        dead_letter_path=str(dead_letters.path),
        dead_letters=dead_letters.count,
        dead_letter_write_errors=dead_letters.write_errors,
        error=_one_line(error),
        signal=signal,
        not_started=not_started,
        # offline, a stage's waits are a recording's, not the site's: no hint would be true of the real run
        hints=hints(stages) if reason == "finished" and flowed and not offline_replay() else [],
        errors=dead_letters.grouped(),
    )
    if report.dead_letter_write_errors and not report.error:
        report.error = f"the dead-letter file could not be written: {dead_letters.first_write_error}"
    return report


def _one_line(text: str | None) -> str | None:
    return None if text is None else " ".join(text.split())


def snapshot_of(groups: Iterable[WorkerGroup], queues: Iterable[Queue], *, elapsed_s: float, replayed: int) -> Snapshot:
    """The run as it is now (`replayed`: items a replay put into the queues, which no source emitted)."""
    groups = list(groups)
    rows = [GroupRow(g.name, g.runner.alive(), g.runner.size, g.counts(), g.mode) for g in groups]
    sizes = [(q.name, *run_size(q), q.maxsize) for q in queues]
    sources = [g for g in groups if g.is_source]
    sinks = [g for g in groups if not g.outputs]
    # Known once every source has ended; never here when this process runs no source (--only). A replay's
    # items for the other groups go into their queues without any source emitting them: counted in too.
    total = (
        sum(g.counts().emitted for g in sources) + replayed if sources and all(g.finished() for g in sources) else None
    )
    # Items dead-lettered on the way never reach a sink, but they are done with too.
    dropped = sum(g.counts().dead_lettered for g in groups if not g.is_source and g.outputs)
    sink = min((g.counts() for g in sinks), key=lambda c: c.processed + c.dead_lettered, default=None)
    settled = dropped + (sink.processed + sink.dead_lettered if sink is not None else 0)
    dead_lettered = dropped + (sink.dead_lettered if sink is not None else 0)
    return Snapshot(elapsed_s, rows, sizes, total, settled, dead_lettered)
