"""What a run did: counts per worker group and per queue, how it ended, and the exit code that says so."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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


@dataclass
class QueueReport:
    """Final counts of one queue."""

    name: str
    maxsize: int
    put: int
    taken: int
    left: int
    high_water: int


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


def _stage(group: GroupReport) -> str:
    done = f"{group.received} in, {f'stored {group.stored}' if group.sink else f'{group.emitted} out'}"
    failed = f", {group.dead_lettered} dead-lettered" if group.dead_lettered else ""
    crashed = f", {group.crashed} crashed" if group.crashed else ""
    return f"{group.name} {done}{failed}{crashed}"
