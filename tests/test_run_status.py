"""`python main.py --status --run-id R`: the whole run from its Redis, read-only, for a split run in progress, a
finished one and one with a dead process. Every process here is `python main.py`, over the tests' Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
from main_process import THREE_OVER_REDIS, main_env

from conftest import ROOT, TEST_REDIS_URL

TIMEOUT_S = 60.0


class Split:
    """One split run of PIPELINE: its processes, started with --only, and --status against it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.pipeline = tmp_path / "split.yaml"
        self.pipeline.write_text(
            THREE_OVER_REDIS.format(maxsize=10, values=[1, 2, 3], sink="Collect", key=tmp_path / "sink")
        )
        self.run_id = f"status-{uuid.uuid4().hex[:8]}"
        self.env = main_env(tmp_path)
        self.processes: list[subprocess.Popen] = []

    def start(self, only: str) -> subprocess.Popen:
        command = [sys.executable, str(ROOT / "main.py"), "--pipeline", str(self.pipeline), "--quiet",
                   "--run-id", self.run_id, "--only", only]  # fmt: skip
        process = subprocess.Popen(
            command, env=self.env, cwd=self.tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.processes.append(process)
        return process

    def status(self) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "main.py"), "--pipeline", str(self.pipeline), "--status", "--once",
                   "--run-id", self.run_id]  # fmt: skip
        return subprocess.run(
            command, env=self.env, cwd=self.tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S
        )

    def status_when(self, condition, what: str) -> subprocess.CompletedProcess:
        """--status --once again until its output meets `condition` (the run's processes report every second)."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            shown = self.status()
            if condition(shown.stdout) or time.monotonic() > deadline:
                assert condition(shown.stdout), f"{what}: {shown.stdout}{shown.stderr}"
                return shown
            time.sleep(0.2)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


def keys_and_values(prefix: str) -> dict[bytes, bytes | None]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        return {key: client.dump(key) for key in client.scan_iter(match=f"{prefix}*")}
    finally:
        client.close()


def test_status_of_a_split_run_in_progress_then_ended(tmp_path, redis_keys_of_the_test):
    run = Split(tmp_path)
    try:
        ends = run.start("Source,Sink")
        waiting = run.status_when(
            lambda out: "queue Numbers: 3 in the stream" in out and "(Source, Sink): alive" in out,
            "the source's items in Redis, and its process's report",
        )
        assert waiting.returncode == 0
        first = waiting.stdout.splitlines()[0]
        assert first.startswith(f"run {run.run_id}: running: ") and "no process has joined to run Middle" in first
        assert "(Source, Sink): alive" in waiting.stdout

        middle = run.start("Middle")
        assert ends.wait(TIMEOUT_S) == 0 and middle.wait(TIMEOUT_S) == 0
        prefix = f"{redis_keys_of_the_test}:split:{run.run_id}:"
        before = keys_and_values(prefix)
        ended = run.status()
        assert keys_and_values(prefix) == before  # read-only: not a key written, not one added
    finally:
        run.close()

    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert ended.stdout.splitlines()[0] == f"run {run.run_id}: ended: every group has ended; 0 dead-lettered"
    assert "group Sink: 3 in, 3 done, 0 dead-lettered" in ended.stdout
    assert ended.stdout.count("finished, last report") == 2


def test_status_names_a_dead_process_and_exits_1(tmp_path):
    run = Split(tmp_path)
    try:
        middle = run.start("Middle")
        alive = run.status_when(lambda out: "(Middle): alive" in out, "the process reporting")
        # A group reading a Redis queue is seen in its process's reports (it said "no process has joined").
        assert "Middle still runs in " in alive.stdout.splitlines()[0], alive.stdout
        middle.send_signal(signal.SIGKILL)
        middle.wait(TIMEOUT_S)
        dead = run.status_when(lambda out: "PRESUMED DEAD" in out, "the dead process named")  # its heartbeat lapses
    finally:
        run.close()

    assert dead.returncode == 1
    assert "(Middle): PRESUMED DEAD (no heartbeat)" in dead.stdout


def test_status_without_a_run_id_is_a_usage_error(tmp_path):
    run = Split(tmp_path)
    command = [sys.executable, str(ROOT / "main.py"), "--pipeline", str(run.pipeline), "--status", "--once"]
    env = {k: v for k, v in run.env.items() if k != "RUN_ID"}
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2 and "--status needs the run to show: --run-id ID" in done.stderr


def test_status_follows_the_run_a_line_per_interval_and_exits_when_it_ends(tmp_path):
    run = Split(tmp_path)
    command = [sys.executable, str(ROOT / "main.py"), "--pipeline", str(run.pipeline), "--status",
               "--status-interval", "0.2", "--run-id", run.run_id]  # fmt: skip
    try:
        ends = run.start("Source,Sink")
        middle = run.start("Middle")
        followed = subprocess.run(command, env=run.env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)
        assert ends.wait(TIMEOUT_S) == 0 and middle.wait(TIMEOUT_S) == 0
    finally:
        run.close()

    assert followed.returncode == 0, followed.stdout + followed.stderr
    lines = followed.stdout.splitlines()
    assert lines and all(line.startswith(f"run {run.run_id}: ") for line in lines)  # one plain line each time
    assert lines[-1] == f"run {run.run_id}: ended: every group has ended; 0 dead-lettered"
