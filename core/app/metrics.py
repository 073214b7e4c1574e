"""--metrics-file PATH: the run in the Prometheus text format, for node_exporter's textfile collector, written
(atomically: prometheus_client writes a temporary file and renames it) every status interval while the run goes
and once at its end.

Every name starts with `pipeline_` and has a `pipeline` label; counts are counters (`_total`), times in seconds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from core.run.report import RunReport, Snapshot

logger = logging.getLogger(__name__)

GROUP_COUNTS = ("received", "processed", "dead_lettered", "failed", "stored")


class _Fixed:
    """A collector of metric families made beforehand (the registry asks it once, to write the file)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def write(path: str, families: list[Metric]) -> None:
    """Write the families to `path`, whole or not at all."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    write_to_textfile(path, registry)


def _groups(pipeline: str, counts: dict[str, dict[str, float]]) -> list[Metric]:
    families: list[Metric] = []
    for key in GROUP_COUNTS:
        family = CounterMetricFamily(
            f"pipeline_group_{key}",
            f"Items the worker group has {key.replace('_', '-')} in this run",
            labels=["pipeline", "group"],
        )
        for group, values in counts.items():
            family.add_metric([pipeline, group], values.get(key, 0))
        families.append(family)
    return families


def _gauge(name: str, text: str, value: float, pipeline: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=["pipeline"])
    family.add_metric([pipeline], value)
    return family


def _queues(pipeline: str, rows: list[tuple[str, int, int | None]]) -> list[Metric]:
    size = GaugeMetricFamily("pipeline_queue_size", "Items waiting in the queue", labels=["pipeline", "queue"])
    high = GaugeMetricFamily(
        "pipeline_queue_high_water", "The most items that waited at once", labels=["pipeline", "queue"]
    )
    for name, now, most in rows:
        size.add_metric([pipeline, name], now)
        if most is not None:
            high.add_metric([pipeline, name], most)
    return [size, high]


def while_running(pipeline: str, snap: Snapshot) -> list[Metric]:
    """The run so far."""
    counts = {row.name: {key: getattr(row.counts, key) for key in GROUP_COUNTS} for row in snap.groups}
    return [
        _gauge("pipeline_run_running", "1 while the run goes, 0 once it has ended", 1, pipeline),
        _gauge("pipeline_run_duration_seconds", "How long the run has gone on, or went on", snap.elapsed_s, pipeline),
        *_groups(pipeline, counts),
        *_queues(pipeline, [(name, size, None) for name, size, _, _ in snap.queues]),
    ]


def at_end(report: RunReport, last_success_s: float | None) -> list[Metric]:
    """The run's end; `last_success_s`: when a run of the pipeline last ended with exit 0 (Unix time), if ever."""
    pipeline = report.pipeline
    reason = GaugeMetricFamily("pipeline_run_finish_reason", "1 for how the run ended", labels=["pipeline", "reason"])
    reason.add_metric([pipeline, report.finish_reason], 1)
    counts = {g.name: {key: getattr(g, key) for key in GROUP_COUNTS} for g in report.groups}
    families: list[Metric] = [
        _gauge("pipeline_run_running", "1 while the run goes, 0 once it has ended", 0, pipeline),
        _gauge(
            "pipeline_run_duration_seconds", "How long the run has gone on, or went on", report.duration_s, pipeline
        ),
        _gauge("pipeline_run_exit_code", "The run's exit code", report.exit_code, pipeline),
        reason,
        _gauge(
            "pipeline_items_lost", "Items unaccounted for (0 unless something went badly wrong)", report.lost, pipeline
        ),
        *_groups(pipeline, counts),
        *_queues(pipeline, [(q.name, q.left, q.high_water) for q in report.queues]),
    ]
    if last_success_s is not None:
        families.append(
            _gauge(
                "pipeline_last_success_timestamp_seconds", "When a run last ended with exit 0", last_success_s, pipeline
            )
        )
    return families


class MetricsWriter(threading.Thread):
    """Writes the run's metrics every `interval_s` until stopped."""

    def __init__(self, path: str, pipeline: str, snapshot: Callable[[], Snapshot], *, interval_s: float) -> None:
        super().__init__(name="MetricsWriter", daemon=True)
        self.path, self.pipeline, self.snapshot, self.interval_s = path, pipeline, snapshot, interval_s
        self._finish = threading.Event()

    def run(self) -> None:
        while True:
            try:
                write(self.path, while_running(self.pipeline, self.snapshot()))
            except OSError as exc:
                logger.warning("cannot write --metrics-file %s: %s", self.path, exc)
            if self._finish.wait(self.interval_s):
                return

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop writing (the final file is written by the end of the run) and wait for the thread."""
        self._finish.set()
        self.join(timeout_s)
