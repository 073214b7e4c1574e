"""A run over time: per worker group what it received, emitted, failed, stored and how busy it was, per queue how
full it was, one point per STEP_S at most.

Counts are kept as running totals at each point, so two neighbouring points merge by keeping the later one; once a
series reaches MAX_POINTS every pair is merged and the step doubles. A run of any length keeps at most MAX_POINTS
points per series (about 600 × (6 numbers per group + 2 per queue)), and the totals stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.run.ledger import Counts

STEP_S = 1.0  # the finest interval between two points
MAX_POINTS = 600
GROUP_FIELDS = ("received", "emitted", "failed", "stored", "dead_lettered")


@dataclass
class _Point:
    t_s: float  # seconds since the run started, at the end of the interval
    groups: dict[str, tuple[int, int, int, int, int, float]]  # running totals (GROUP_FIELDS) and busy seconds
    # size at the end, the largest size sampled in the interval, and for a Redis queue its pending at the end
    queues: dict[str, tuple[int, int, int | None]]


@dataclass
class Timeline:
    """Points of a run; `add` them as it goes (any time: those closer than `step_s` to the last are merged in)."""

    instances: dict[str, int]  # per group, to turn busy seconds into a share
    step_s: float = STEP_S
    max_points: int = MAX_POINTS
    points: list[_Point] = field(default_factory=list)

    def add(self, t_s: float, groups: dict[str, Counts], queues: dict[str, tuple[int, int, int | None]]) -> None:
        """Record the run at `t_s`: each group's counts so far, each queue's (size now, largest since the last
        call, pending now: None for a queue of this process)."""
        point = _Point(
            t_s,
            {
                name: (c.received, c.emitted, c.failed, c.stored, c.dead_lettered, c.busy_s - c.blocked_s)
                for name, c in groups.items()
            },
            dict(queues),
        )
        last = self.points[-1] if self.points else None
        if last is not None and t_s - self._start_of(len(self.points) - 1) <= self.step_s + 1e-9:
            self.points[-1] = _merged(last, point)  # within the step: the later totals, the larger peak
            return
        self.points.append(point)
        if len(self.points) > self.max_points:
            self._halve()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per interval `t_s` (its end), and per group and queue one value per interval."""
        ends = [p.t_s for p in self.points]
        starts = [0.0, *ends][: len(ends)]
        groups: dict[str, dict[str, list[float]]] = {}
        for name, instances in self.instances.items():
            totals = [p.groups.get(name, (0, 0, 0, 0, 0, 0.0)) for p in self.points]
            before = [(0, 0, 0, 0, 0, 0.0), *totals][: len(totals)]
            series: dict[str, list[float]] = {
                key: [now[i] - then[i] for now, then in zip(totals, before, strict=True)]
                for i, key in enumerate(GROUP_FIELDS)
            }
            series["busy"] = [
                round(max(now[5] - then[5], 0.0) / ((end - start) * instances), 3) if end > start and instances else 0.0
                for now, then, start, end in zip(totals, before, starts, ends, strict=True)
            ]
            groups[name] = series
        queue_names = list(dict.fromkeys(name for p in self.points for name in p.queues))
        queues: dict[str, dict[str, list[int | None]]] = {}
        for name in queue_names:
            values = [p.queues.get(name, (0, 0, None)) for p in self.points]
            queues[name] = {"size": [v[0] for v in values], "peak": [v[1] for v in values]}
            if any(v[2] is not None for v in values):  # a Redis queue: read and not settled, across the run
                queues[name]["pending"] = [v[2] for v in values]
        return {"step_s": self.step_s, "t_s": [round(t, 3) for t in ends], "groups": groups, "queues": queues}

    def _start_of(self, index: int) -> float:
        return self.points[index - 1].t_s if index > 0 else 0.0

    def _halve(self) -> None:
        """Merge each pair of points: half as many, each over twice the step."""
        self.points = [
            _merged(self.points[i], self.points[i + 1]) if i + 1 < len(self.points) else self.points[i]
            for i in range(0, len(self.points), 2)
        ]
        self.step_s *= 2


def _merged(earlier: _Point, later: _Point) -> _Point:
    """One point over both intervals: the later totals and size, the larger peak."""
    queues = {
        name: (size, max(peak, earlier.queues.get(name, (0, 0, None))[1]), pending)
        for name, (size, peak, pending) in later.queues.items()
    }
    return _Point(later.t_s, later.groups, queues)
