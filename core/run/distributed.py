"""The executor's part in a run spread over processes and machines through Redis (queues with
`backend: redis`): which groups this process runs (`--only`), the run it joins (`--run-id`), the Redis
queues and the sources' input values kept there, end marks, and the run's report across processes.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from dataclasses import asdict
from typing import Any

from core.pipeline.config import ConfigError, PipelineSpec, Problem
from core.transport.redis.client import DEFAULT_URL, RETRY_BUDGET_S, RedisLost, RedisRun
from core.transport.redis.ends import RedisEnds
from core.transport.redis.members import Members
from core.transport.redis.queue import RedisQueue

logger = logging.getLogger(__name__)

STALL_WARN_S = 60.0  # a run waiting this long without progress says what it waits for


def check_only(spec: PipelineSpec, only: list[str] | None) -> list[str]:
    """The groups this process runs; ConfigError for an unknown name or a local queue cut in two."""
    names = [worker.name for worker in spec.workers]
    if not only:
        return names
    problems = [
        Problem(spec.path, 0, "--only", f"no worker group {name!r} in the pipeline (it has: {', '.join(names)})")
        for name in only
        if name not in names
    ]
    for queue in spec.queues.values():
        if queue.backend == "redis":
            continue
        ends = [w.name for w in spec.producers(queue.name)] + [c.name for c in [spec.consumer(queue.name)] if c]
        inside = [name for name in ends if name in only]
        if inside and len(inside) != len(ends):
            outside = [name for name in ends if name not in only]
            problems.append(
                Problem(
                    spec.path,
                    queue.line,
                    f"queues.{queue.name}",
                    f"is local, but --only runs {', '.join(inside)} here without "
                    f"{', '.join(outside)}: a local queue cannot cross processes; "
                    "give it `backend: redis`, or run its groups together",
                )
            )
    if problems:
        raise ConfigError(problems)
    return [name for name in names if name in only]


class Distributed:
    """Redis queues and the run they belong to, for one executor."""

    def __init__(self, spec: PipelineSpec, *, run_id: str | None, only: list[str] | None) -> None:
        self.spec = spec
        given = run_id or os.environ.get("RUN_ID")
        #: No run id given: no other process can join this run, so this process may decide its queues' ends.
        self.solo = not given
        self.run_id = given or time.strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:8]
        self.url = os.environ.get("REDIS_URL") or DEFAULT_URL
        from core.base.redact import register_url_password

        register_url_password(self.url)  # as written (URL-encoded) and decoded, as redis-py uses it
        if only and self.solo:
            raise ConfigError(
                [
                    Problem(
                        spec.path,
                        0,
                        "--only",
                        "runs part of a run that others join: give the run an id they share, --run-id ID (or RUN_ID)",
                    )
                ]
            )
        self.groups = check_only(spec, only)
        self.run = RedisRun(self.url, spec.name, self.run_id, retry_budget_s=retry_budget_s(spec))
        self.members = Members(self.run)
        self.queues: dict[str, RedisQueue] = {}
        self.inputs = {worker.name: worker.input_queue or f"{worker.name}.values" for worker in spec.workers}
        self.ends = RedisEnds(self.run, spec, self.inputs, self.queues)
        self._values: dict[str, list[Any]] = {}
        self._written: set[str] = set()  # sources whose input values are in the run (written here or before)
        self._ended_here: set[str] = set()
        self.stall_warn_s = STALL_WARN_S
        self._progress = 0  # this process's counts summed, and since when they have not moved
        self._progress_at: float | None = None

    def queue(self, name: str, maxsize: int, reader: str, **settings: Any) -> RedisQueue:
        """The Redis queue `name`, read by group `reader`."""
        queue = RedisQueue(name, maxsize, self.run, reader=reader, solo=self.solo, **settings)
        queue.ended = lambda: self.ends.ended(name)
        queue.no_more_new = lambda: self.ends.delivered(name)
        self.queues[name] = queue
        return queue

    def values(self, worker: Any, values: list[Any]) -> RedisQueue:
        """A source's input values as a Redis queue, written once for the run (so a source run by several
        processes, or started again, never emits a value twice)."""
        self._values[worker.name] = values
        # A value is held as long as the items it makes: its lease times out like those of the queues it feeds.
        timeouts = [
            self.spec.queues[name].visibility_timeout_s
            for name in worker.output_queues
            if self.spec.queues[name].backend == "redis"
        ]
        queue = self.queue(
            f"{worker.name}.values", max(len(values), 1), worker.name, visibility_timeout_s=min(timeouts, default=30.0)
        )
        if self.solo:  # if the run's keys vanish, the values never read are known by name (not started)
            queue.fetcher.read_payloads = []
        return queue

    def open(self, local_input_groups: list[str]) -> None:
        """Join the run (StartupError if Redis cannot hold it), write the sources' values if first, create
        the streams, and say which groups with local input this process runs."""
        self.run.open()
        for name, values in self._values.items():
            written = self.queues[f"{name}.values"].writer.fill_once(values)
            self._written.add(name)
            logger.info(
                "%s: %s",
                name,
                f"{written} input value(s) written to the run"
                if written
                else "input values already in the run (written by the process that started it)",
            )
        for queue in self.queues.values():
            queue.stream.create()
        for group in local_input_groups:
            self.members.join_group(group)

    def group_finished(self, group: str) -> None:
        """Every instance of `group` in this process has ended."""
        if group not in self._ended_here:
            self._ended_here.add(group)
            try:
                self.members.end_group(group)
            except RedisLost:
                pass  # the run is lost here (logged, and the run stopping): there is no one to tell

    def publish(self, groups: dict[str, Any], finished: bool, timeline: dict[str, Any] | None = None) -> None:
        """This process's counts (and at its end its timeline), for the run's report."""
        report: dict[str, Any] = {
            "process": self.run.process_id,
            "finished": finished,
            "time": time.time(),
            "groups": {name: asdict(counts) for name, counts in groups.items()},
        }
        if timeline is not None:
            report["timeline"] = timeline
        try:
            self.members.report(report)
        except RedisLost:
            pass  # the run is lost here (logged, and the run stopping): its own report still tells
        if not finished:
            self._watch_progress(groups)

    def _watch_progress(self, groups: dict[str, Any]) -> None:
        """Say what the run waits for once this process has made no progress for stall_warn_s (and again
        after as long again)."""
        progress = sum(c.received + c.processed + c.emitted + c.dead_lettered for c in groups.values())
        now = time.monotonic()
        if self._progress_at is None or progress != self._progress:
            self._progress, self._progress_at = progress, now
            return
        if now - self._progress_at < self.stall_warn_s:
            return
        try:
            why = self.waiting_for()
        except RedisLost:
            return
        logger.warning("no progress for %.0fs: %s", now - self._progress_at, why)
        self._progress_at = now

    def waiting_for(self) -> str:
        """What the groups other processes run are doing, and what waits in the run's queues."""
        others = [self.members.waiting_for(w.name) for w in self.spec.workers if w.name not in self.groups]
        others = [text for text in others if not text.endswith("has ended")]
        queued = [f"{q['left']} waiting in {name}" for name, q in self.ledger().items() if q.get("left")]
        return "; ".join(others + queued) or "every group of the run has ended elsewhere; nothing waits in its queues"

    def ledger(self) -> dict[str, dict[str, int]]:
        """Per Redis queue of the pipeline: entries added, still waiting, in hand; and the dead-letter stream."""
        result = {}
        for name, queue in self.queues.items():
            if name.endswith(".values"):
                continue
            stream = self.run.call(functools.partial(self.run.redis.xinfo_stream, queue.key))
            groups = self.run.call(functools.partial(self.run.redis.xinfo_groups, queue.key))
            group: dict[str, Any] = next((g for g in groups if _text(g["name"]) == queue.group), {})
            result[name] = {
                "added": int(stream.get("entries-added", 0)),
                "left": int(stream.get("length", 0)),
                "pending": int(group.get("pending", 0)),
            }
        result["dead letters in Redis"] = {
            "added": int(self.run.call(lambda: self.run.redis.xlen(self.run.key("dead"))))
        }
        return result

    def run_report(self, wait_s: float = 10.0) -> dict[str, Any]:
        """The whole run, from every process's counts (waiting up to `wait_s` for the others' last ones) and
        the Redis queues themselves: per group and per process, the totals, and each queue's ledger."""
        deadline = time.monotonic() + wait_s
        while True:
            reports = self.members.reports()
            # Every live process, reported or not yet: one that ends a group before it publishes its last counts
            # (its group's end is what let this one finish) is still alive, and is waited for.
            live = set(self.members.alive()) | {proc for proc in reports if self.run.alive(proc)}
            unfinished = sorted(proc for proc in live if not reports.get(proc, {}).get("finished"))
            if not unfinished or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        totals: dict[str, dict[str, float]] = {w.name: {} for w in self.spec.workers}  # in the file's order
        for report in reports.values():
            for group, counts in report["groups"].items():
                into = totals.setdefault(group, {})
                for key, value in counts.items():
                    into[key] = into.get(key, 0) + value
        return {
            "run_id": self.run_id,
            "redis": self.run.describe(),
            "processes": reports,
            "groups": {name: counts for name, counts in totals.items() if counts},
            "sinks": [w.name for w in self.spec.workers if not w.output_queues],
            "ledger": self.ledger(),
            "unfinished": unfinished,
        }

    def close(self) -> None:
        if self.solo:  # values that never reached Redis (it could not be reached) are this run's alone,
            for name, values in self._values.items():  # and so are those that vanished with its keys unread
                queue = self.queues[f"{name}.values"]
                if name not in self._written:
                    left = values
                elif self.run.gone:
                    left = queue.fetcher.unread(values)
                    queue.writer.added -= len(left)  # accounted for by name: not lost
                else:
                    left = []
                for value in left:
                    queue.on_reject(value)
        for queue in self.queues.values():  # all at once: in a solo run one's end may wait on another's
            queue.fetcher.finish()
        for queue in self.queues.values():
            queue.fetcher.shutdown()
        self.run.close()


def retry_budget_s(spec: PipelineSpec) -> float:
    """How long Redis may be unreachable before the run ends: REDIS_RETRY_BUDGET_S seconds (default 20)."""
    text = os.environ.get("REDIS_RETRY_BUDGET_S")
    if not text:
        return RETRY_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ConfigError(
            [Problem(spec.path, 0, "REDIS_RETRY_BUDGET_S", f"must be a number of seconds above 0, got {text!r}")]
        )
    return value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
