"""Which stage held the run back: from sampled queue sizes and the time each stage spent working.

A queue's size is sampled on a clock (the executor's sample interval), each sample weighed by the time since the
one before: a burst of samples close together (instances ending one after another) stands for moments, not for
a share of the run."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

FULL_AT = 0.9  # a queue at 90% of maxsize counts as full
BACKLOG_AT = 0.5  # an input queue non-empty half the time means its reader cannot keep up
BUSY_AT = 0.8  # instances working 80% of the time have no slack
IDLE_BELOW = 0.2
MAX_SUGGESTED = 10_000  # the most instances a group may have (core/pipeline/entries.py MAX_INSTANCES)
#: A stage upstream that worked this share of the run or less is taken as this busy: its "could give" rate
#: (items/s divided by busy) is then at most 1/UPSTREAM_BUSY_FLOOR times what it gave.
UPSTREAM_BUSY_FLOOR = 0.05
RATE_LIMITED_AT = 0.8  # running at 80% of requests_per_second means the limit is what holds it


@dataclass
class QueueLoad:
    """One queue's size over the run, as seconds: watched, non-empty, full, and size × seconds."""

    seconds: float = 0.0
    nonempty_s: float = 0.0
    full_s: float = 0.0
    size_seconds: float = 0.0

    def add(self, size: int, maxsize: int, seconds: float) -> None:
        """Record a sample standing for the `seconds` since the one before."""
        self.seconds += seconds
        self.size_seconds += size * seconds
        if size > 0:
            self.nonempty_s += seconds
        if size >= FULL_AT * maxsize:
            self.full_s += seconds

    def fraction(self, seconds: float) -> float:
        """`seconds` as a share of the time watched."""
        return seconds / self.seconds if self.seconds else 0.0

    def mean_size(self) -> float:
        """The queue's size averaged over the time watched."""
        return self.size_seconds / self.seconds if self.seconds else 0.0


@dataclass
class StageLoad:
    """How hard one worker group worked, and what its input queue looked like meanwhile."""

    name: str
    instances: int
    busy: float  # share of the run its instances spent working, waits for a full output excluded
    items_per_s: float
    input_queue: str | None = None
    input_load: QueueLoad | None = None
    requests_per_second: float = 0.0
    processes: int = 0  # worker processes, 0 when its instances run in this process
    upstream: str | None = None  # the group(s) writing its input queue
    upstream_rate: float = 0.0  # items/s they could give it, had they never waited for it (0: not known)


def hints(stages: list[StageLoad], *, cores: int | None = None) -> list[str]:
    """One-line advice: the stage to scale (or the rate limit to raise), and the stages that idled. `cores`: the
    machine's (os.cpu_count() by default), the limit of a stage in worker processes."""
    advice = []
    readers = [s for s in stages if s.input_load is not None and s.input_load.seconds]
    backlogged = [s for s in readers if _load(s).fraction(_load(s).nonempty_s) >= BACKLOG_AT]
    bottleneck = max(backlogged, key=lambda s: s.busy, default=None)
    if bottleneck is not None and bottleneck.busy < BUSY_AT:
        bottleneck = None  # a backlog its reader had time for: nobody is short of instances
    if bottleneck is not None:
        advice.append(_scale_hint(bottleneck, cores or os.cpu_count() or 1))
    elif readers and not backlogged:
        sources = ", ".join(s.name for s in stages if s.input_queue is None)
        advice.append(f"no queue built up: the run went as fast as its source ({sources}) produced")
    for stage in readers:
        # One instance idling is no advice: it cannot have fewer.
        if stage is not bottleneck and stage.busy < IDLE_BELOW and stage.instances > 1:
            advice.append(
                f"{stage.name} sat idle {100 * (1 - stage.busy):.0f}% of the time: "
                f"{stage.instances} instances are more than it needs"
            )
    return advice


def _load(stage: StageLoad) -> QueueLoad:
    """The load of a stage's input queue (a stage that reads one)."""
    if stage.input_load is None:
        raise ValueError(f"{stage.name} reads no queue")
    return stage.input_load


def _scale_hint(stage: StageLoad, cores: int) -> str:
    load = _load(stage)
    full = load.fraction(load.full_s)
    how = f"full {100 * full:.0f}%" if full >= BACKLOG_AT else f"non-empty {100 * load.fraction(load.nonempty_s):.0f}%"
    held = f"{stage.name} kept {stage.input_queue} {how} of the time, its instances busy {100 * stage.busy:.0f}%"
    limit = stage.requests_per_second
    if limit and stage.items_per_s >= RATE_LIMITED_AT * limit:
        return (
            f"{held}, at {stage.items_per_s:.1f} items/s against requests_per_second={limit:g}: "
            "raise requests_per_second (if the site allows), not instances"
        )
    if stage.processes and stage.processes == stage.instances:  # one instance per process: CPU-bound work
        if stage.processes >= cores:
            return (
                f"{held}: its {stage.processes} processes already use the machine's {cores} cores, so more would "
                "not make it faster; make each item cheaper, or add a machine (Redis queues)"
            )
        return f"{held}: raise its processes (now {stage.processes}) up to {cores}, the machine's cores"
    advice = f"{held}: raise its instances (now {stage.instances})"
    per_instance = stage.items_per_s / (stage.instances * stage.busy) if stage.instances and stage.busy else 0.0
    if stage.upstream and stage.upstream_rate > stage.items_per_s and per_instance > 0:
        needed = min(math.ceil(stage.upstream_rate / per_instance), MAX_SUGGESTED)
        advice += f"; about {needed} would keep up with {stage.upstream}'s {stage.upstream_rate:.0f} items/s"
    return advice
