"""Who takes part in a run over Redis: the processes that run each group whose input is local (their end
marks), and each process's last published counts for the run's report."""

from __future__ import annotations

import json

from core.transport.redis.client import RedisRun


class Members:
    """The members of a run's groups and their reports, kept in the run's keys."""

    def __init__(self, run: RedisRun) -> None:
        self.run = run

    def join_group(self, group: str) -> None:
        """This process runs `group` (whose input is local): it counts as running until it ends it."""
        run = self.run
        run.call(lambda: run.redis.hset(run.key("members", group), run.process_id, "running"))

    def end_group(self, group: str) -> None:
        """This process has ended `group`."""
        run = self.run
        run.call(lambda: run.redis.hset(run.key("members", group), run.process_id, "ended"))
        run.wake_readers()

    def group_ended(self, group: str) -> bool:
        """Every process that runs `group` has ended it or died (and at least one ran it)."""
        members = self._of(group)
        if not members:
            return False
        return all(state == b"ended" or not self.run.alive(member.decode()) for member, state in members.items())

    def waiting_for(self, group: str) -> str:
        """Where `group` runs, for a run that makes no progress: a group reading a local input is a member of
        the run from its start; one reading a Redis queue shows in the counts its processes report."""
        members = {member.decode(): state for member, state in self._of(group).items()}
        reports = {proc: report for proc, report in self.reports().items() if group in report.get("groups", {})}
        busy = {m for m, state in members.items() if state != b"ended"}
        busy |= {
            proc for proc, report in reports.items() if not report.get("finished") and members.get(proc) != b"ended"
        }
        running = sorted(proc for proc in busy if self.run.alive(proc))
        if running:
            return f"{group} still runs in {', '.join(running)}"
        if members or reports:
            return f"{group} has ended"
        return f"no process has joined to run {group} (start one with --only {group})"

    def report(self, data: dict) -> None:
        """Publish this process's counts for the run's report."""
        run = self.run
        run.call(lambda: run.redis.hset(run.key("reports"), run.process_id, json.dumps(data)))

    def reports(self) -> dict[str, dict]:
        """Every process's last published counts."""
        run = self.run
        raw = run.call(lambda: run.redis.hgetall(run.key("reports")))
        return {member.decode(): json.loads(value) for member, value in raw.items()}

    def alive(self) -> list[str]:
        """Every process of the run whose heartbeat is fresh, whatever it runs."""
        run = self.run
        prefix = run.key("hb", "")
        found = run.call(lambda: list(run.redis.scan_iter(match=prefix + "*", count=1000)))
        return sorted(key.decode()[len(prefix) :] for key in found)

    def _of(self, group: str) -> dict[bytes, bytes]:
        run = self.run
        return run.call(lambda: run.redis.hgetall(run.key("members", group)))
