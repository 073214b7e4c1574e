"""Run history (core/app/history.py): every run recorded in DATA_DIR/history.sqlite3, bounded, safe with writers
side by side and with a writer killed mid-write; `python main.py --history [N]` prints the last runs."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from main_process import main_env

from conftest import ROOT
from core.app import history
from core.run.report import GroupReport, RunReport

TIMEOUT_S = 60.0


def report(pipeline: str = "p", *, stored: int = 5, dead: int = 0, reason: str = "finished") -> RunReport:
    sink = GroupReport(
        name="Sink", instances=1, sink=True, crashed=0, received=stored + dead, processed=stored, emitted=0,
        stored=stored, failed=dead, dead_lettered=dead, in_flight=0,
    )  # fmt: skip
    return RunReport(pipeline=pipeline, finish_reason=reason, duration_s=1.5, groups=[sink], dead_letters=dead)


def test_runs_are_kept_newest_first_per_pipeline_and_bounded(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite3"
    monkeypatch.setattr(history, "KEEP_RUNS", 20)
    for index in range(25):
        history.record(report(stored=index), path=path)
    history.record(report("other"), path=path)

    runs = history.last_runs("p", 100, path=path)
    assert [run["stored"] for run in runs] == list(range(24, 4, -1))  # the newest 20, newest first
    assert len(history.last_runs("other", 100, path=path)) == 1


def test_two_writers_at_once_lose_no_run(tmp_path):
    path = tmp_path / "history.sqlite3"
    errors: list[BaseException] = []

    def write(pipeline: str) -> None:
        try:
            for _ in range(40):
                history.record(report(pipeline), path=path)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    assert len(history.last_runs("a", 100, path=path)) == len(history.last_runs("b", 100, path=path)) == 40


def test_a_writer_killed_mid_write_leaves_the_history_readable_and_whole(tmp_path):
    path = tmp_path / "history.sqlite3"
    history.record(report(stored=1), path=path)
    script = textwrap.dedent(f"""
        import sqlite3, sys, time
        connection = sqlite3.connect({str(path)!r}, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO runs (pipeline, process, started, ended, duration_s, finish_reason,"
                           " exit_code, stored, dead_letters, lost, groups) VALUES ('p', 'x', 's', 'e', 0, 'f', 0,"
                           " 999, 0, 0, '{{}}')")
        print("inside", flush=True)
        time.sleep(60)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "inside"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(TIMEOUT_S)

    history.record(report(stored=2), path=path)  # the killed writer's lock went with it
    assert [run["stored"] for run in history.last_runs("p", 10, path=path)] == [2, 1]
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_main_records_each_run_and_history_prints_them_newest_first(tmp_path):
    pipeline = tmp_path / "nightly.yaml"
    pipeline.write_text(
        "queues:\n  - {name: Numbers, maxsize: 10}\nworkers:\n"
        "  - {name: Source, location: fixture_workers, class: Source, input_values: [1, 2, 3], output_queues: [Numbers]}\n"
        "  - {name: Sink, location: fixture_workers, class: FailOdd, input_queue: Numbers}\n"
    )
    env = main_env(tmp_path)

    def main(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "main.py"), "--pipeline", str(pipeline), "--quiet", *args]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)

    first = main()
    second = main("--set", "workers.Source.input_values=[2, 4]")
    shown = main("--history", "5")

    assert (first.returncode, second.returncode) == (1, 0)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:2] == ["started", "(UTC)"] and len(lines) == 3
    assert "exit 0 (finished), stored 2, no dead letters" in lines[1]  # the newest first
    assert "exit 1 (finished), stored 1, 2 dead letters, first error: ItemError: odd number" in lines[2]
    assert Path(tmp_path / "history.sqlite3").exists()
    assert main("--history").stdout.count("\n") == 3  # N defaults to 10
