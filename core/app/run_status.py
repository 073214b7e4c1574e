"""`python main.py --status --run-id R`: the live view of a whole run over Redis, from any machine that reaches
its Redis: every process (host:pid, its groups, its last report, alive or not), each group's counts and rate summed
over the processes, each Redis queue's length, pending and oldest pending age, and the run's state.

Read-only: it reads the run's keys (its members, its processes' reports and heartbeats, its streams) and never
writes one; it takes no lock and joins nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.base.redact import redact
from core.pipeline.specs import PipelineSpec
from core.run.distributed import retry_budget_s
from core.transport.redis.client import DEFAULT_URL, RedisRun
from core.transport.redis.members import Members

COUNTS = ("received", "processed", "emitted", "stored", "dead_lettered", "failed")


@dataclass
class RunState:
    """The run as its keys say now."""

    run_id: str
    state: str  # "not started", "running", "ended"
    why: str  # what it waits for, or how it ended, in a line
    processes: list[dict[str, Any]] = field(default_factory=list)  # process, groups, age_s, alive, finished
    groups: dict[str, dict[str, float]] = field(default_factory=dict)  # summed over the processes
    queues: dict[str, dict[str, float]] = field(default_factory=dict)  # length, pending, oldest_pending_s
    dead: list[str] = field(default_factory=list)  # processes presumed dead: not finished, no heartbeat

    @property
    def failed(self) -> bool:
        """Ended with items failed or lost, or a process died: what --status --once exits 1 for."""
        failed = any(counts.get("dead_lettered") or counts.get("failed") for counts in self.groups.values())
        return bool(self.dead) or (self.state == "ended" and failed)


class RunWatcher:
    """Reads run `run_id` of `spec` from Redis (REDIS_URL); builds a RunState on each `read()`."""

    def __init__(self, spec: PipelineSpec, run_id: str) -> None:
        self.spec = spec
        url = os.environ.get("REDIS_URL") or DEFAULT_URL
        self.run = RedisRun(url, spec.name, run_id, retry_budget_s=retry_budget_s(spec))  # not opened: no key written
        self.members = Members(self.run)

    def read(self) -> RunState:
        """The run as it is now."""
        now = time.time()
        reports = self.members.reports()
        processes: list[dict[str, Any]] = []
        groups = {w.name: dict.fromkeys(COUNTS, 0.0) for w in self.spec.workers}
        for process, report in reports.items():
            alive = self.run.alive(process)
            processes.append(
                {
                    "process": process,
                    "groups": list(report["groups"]),
                    "age_s": round(now - float(report.get("time", now)), 1),
                    "alive": alive,
                    "finished": bool(report.get("finished")),
                }
            )
            for group, counts in report["groups"].items():
                into = groups.setdefault(group, dict.fromkeys(COUNTS, 0.0))
                for key in COUNTS:
                    into[key] += counts.get(key, 0)
        for process in sorted(set(self.members.alive()) - reports.keys()):  # started, not reported yet
            processes.append({"process": process, "groups": [], "age_s": None, "alive": True, "finished": False})
        dead = [str(p["process"]) for p in processes if not p["finished"] and not p["alive"]]
        queues = {name: self._queue(name, now) for name, q in self.spec.queues.items() if q.backend == "redis"}
        ended = [w.name for w in self.spec.workers if self.members.group_ended(w.name)]
        if not processes and not ended:
            state, why = "not started", f"no process has joined run {self.run.run_id} yet"
        elif len(ended) == len(self.spec.workers) and all(p["finished"] or not p["alive"] for p in processes):
            state = "ended"
            lost = sum(c["dead_lettered"] for c in groups.values())
            why = f"every group has ended; {int(lost)} dead-lettered" + (
                f"; {len(dead)} process(es) died" if dead else ""
            )
        else:
            state = "running"
            waits = [self.members.waiting_for(w.name) for w in self.spec.workers if w.name not in ended]
            why = "; ".join(waits)
        return RunState(self.run.run_id, state, why, processes, groups, queues, dead)

    def _queue(self, name: str, now: float) -> dict[str, float]:
        key, group = self.run.key("q", name), self.spec.reader(name).name
        redis = self.run.redis

        def read() -> tuple[int, Any]:
            with redis.pipeline(transaction=False) as pipe:
                pipe.xlen(key)
                pipe.xpending(key, group)
                length, pending = pipe.execute()
            return int(length), pending

        try:
            length, pending = self.run.call(read)
        except Exception:  # noqa: BLE001 - a stream not made yet (no process has written to it): empty
            return {"length": 0, "pending": 0, "oldest_pending_s": 0.0}
        held = int(pending.get("pending", 0)) if isinstance(pending, dict) else 0
        oldest = pending.get("min") if isinstance(pending, dict) else None
        oldest_ms = int(str(oldest.decode() if isinstance(oldest, bytes) else oldest).split("-")[0]) if oldest else 0
        age = round(now - oldest_ms / 1000, 1) if oldest_ms else 0.0
        return {"length": length, "pending": held, "oldest_pending_s": age}

    def close(self) -> None:
        """Let go of the connection."""
        self.run.redis.close()


def lines(state: RunState, rates: dict[str, float]) -> list[str]:
    """The state as text: the run's line, then its processes, groups and queues."""
    out = [f"run {state.run_id}: {state.state}: {state.why}"]
    for p in state.processes:
        health = "finished" if p["finished"] else ("alive" if p["alive"] else "PRESUMED DEAD (no heartbeat)")
        groups = ", ".join(p["groups"]) or "groups not reported yet"
        last = "no report yet" if p["age_s"] is None else f"last report {p['age_s']:.0f}s ago"
        out.append(f"  process {p['process']} ({groups}): {health}, {last}")
    for name, c in state.groups.items():
        out.append(
            f"  group {name}: {int(c['received'])} in, {int(c['processed'])} done, {int(c['dead_lettered'])} "
            f"dead-lettered, {int(c['emitted'])} out, {int(c['stored'])} stored, {rates.get(name, 0.0):.1f}/s"
        )
    for name, q in state.queues.items():
        out.append(
            f"  queue {name}: {int(q['length'])} in the stream, {int(q['pending'])} pending"
            + (f", oldest pending {q['oldest_pending_s']:.0f}s" if q["pending"] else "")
        )
    return out


def watch(spec: PipelineSpec, run_id: str, *, once: bool, interval_s: float, live: bool) -> int:
    """Show the run until it ends (or once); 0 while running or ended cleanly, 1 when it failed or a process died."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    watcher = RunWatcher(spec, run_id)
    try:
        state = watcher.read()
        if once:
            print("\n".join(lines(state, {})), flush=True)
            return 1 if state.failed else 0
        before, at = state, time.monotonic()
        with Live(console=Console(), refresh_per_second=4, transient=False) if live else _NoLive() as display:
            while True:
                now = time.monotonic()
                rates = {
                    name: (c["processed"] - before.groups.get(name, {}).get("processed", 0)) / max(now - at, 1e-9)
                    for name, c in state.groups.items()
                }
                text = "\n".join(lines(state, rates))
                if live:
                    display.update(Text(text))
                else:
                    print(text.splitlines()[0], flush=True)
                if state.state == "ended":
                    return 1 if state.failed else 0
                time.sleep(interval_s)
                before, at, state = state, now, watcher.read()
    finally:
        watcher.close()


class _NoLive:
    """Stands for rich's Live when there is no terminal."""

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, renderable: object) -> None:
        """Nothing to redraw."""


def status_command(path: Path, args: argparse.Namespace) -> int:
    """--status: the whole run named by --run-id (or RUN_ID), read from its Redis; exit 2 without one."""
    from core.pipeline.config import ConfigError, load_pipeline

    run_id = args.run_id or os.environ.get("RUN_ID")
    if not run_id:
        logging.getLogger("main").error("--status needs the run to show: --run-id ID (or RUN_ID)")
        return 2
    try:
        spec = load_pipeline(path, sets=args.sets)
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(str(problem)), file=sys.stderr)
        return 2
    live = not args.once and sys.stdout.isatty()
    return watch(spec, run_id, once=args.once, interval_s=1.0 if live else args.status_interval, live=live)
