"""What a run's monitor measures while it goes: each queue's load, sampled on the clock and weighed by time
(core/run/bottleneck.py), and the run's timeline (core/run/timeline.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.run.bottleneck import QueueLoad
from core.run.group import WorkerGroup
from core.run.timeline import Timeline
from core.transport.base import Queue, run_size


class Watch:
    """Samples the queues every `sample_interval_s` and adds the run to its timeline; `tick` it often."""

    def __init__(
        self, groups: Mapping[str, WorkerGroup], queues: Mapping[str, Queue], *, sample_interval_s: float
    ) -> None:
        self.groups = groups
        self.queues = queues
        self.sample_interval_s = sample_interval_s
        self.loads = {name: QueueLoad() for name in queues}
        self.timeline = Timeline({name: group.runner.size for name, group in groups.items()})
        self._peaks = dict.fromkeys(queues, 0)  # each queue's largest sampled size since the last point
        self._started_at: float | None = None
        self._last_sample = self._last_point = 0.0

    def start(self, now: float) -> None:
        """The run starts now."""
        self._started_at = self._last_sample = self._last_point = now

    def tick(self, now: float) -> None:
        """Sample if a sample is due (on the clock only: never because something woke the monitor, as instance
        ends come in bursts and would outweigh the run)."""
        if self._started_at is None or now - self._last_sample < self.sample_interval_s:
            return
        for name, queue in self.queues.items():
            size, _ = run_size(queue)
            self.loads[name].add(size, queue.maxsize, now - self._last_sample)
            self._peaks[name] = max(self._peaks[name], size)
        self._last_sample = now
        if now - self._last_point >= self.timeline.step_s:  # a group's counts sum every instance's: once a step
            self.point(now)

    def point(self, now: float) -> None:
        """Add the run as it is now to the timeline (which keeps one point a second at most)."""
        if self._started_at is None:
            return
        sizes = {name: run_size(queue) for name, queue in self.queues.items()}
        queues = {name: (size, max(size, self._peaks[name]), pending) for name, (size, pending) in sizes.items()}
        self.timeline.add(now - self._started_at, {n: g.counts() for n, g in self.groups.items()}, queues)
        self._peaks = dict.fromkeys(self.queues, 0)
        self._last_point = now

    def final_timeline(self, now: float) -> dict[str, Any]:
        """The timeline with a last point at `now`, JSON-ready."""
        self.point(now)
        return self.timeline.to_dict()
