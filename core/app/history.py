"""Run history: every run's summary in DATA_DIR/history.sqlite3 (one row per process of a split run, grouped by its
run id), the last KEEP_RUNS runs of each pipeline for at most KEEP_DAYS days, and `--history [N]` to read it.

SQLite in WAL mode, each run written in one transaction: two pipelines (or two processes of one) writing at once
wait on each other's lock for a moment, and a run killed while it writes leaves the file as it was before it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.base.paths import data_dir
from core.run.report import RunReport

FILE_NAME = "history.sqlite3"
KEEP_RUNS = 1000  # per pipeline
KEEP_DAYS = 90
BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another's transaction
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    run_id TEXT,
    process TEXT NOT NULL,
    started TEXT NOT NULL,
    ended TEXT NOT NULL,
    duration_s REAL NOT NULL,
    finish_reason TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    dead_letters INTEGER NOT NULL,
    lost INTEGER NOT NULL,
    first_error TEXT,
    dead_letter_path TEXT,
    report_html TEXT,
    groups TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, ended);
"""


def history_path() -> Path:
    """Where the history is kept: beside the pipeline's other data (DATA_DIR)."""
    return data_dir() / FILE_NAME


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        # Turning WAL on (once, when the file is new) does not wait on SQLite's busy timeout as writes do: two
        # runs making the file at once see "database is locked" here, and try again.
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(SCHEMA)
            return connection
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                connection.close()
                raise
            time.sleep(0.01)


def record(report: RunReport, *, report_html: str | None = None, path: Path | None = None) -> None:
    """Add this run to the history, and forget the pipeline's runs past KEEP_RUNS or KEEP_DAYS."""
    ended = datetime.now(UTC)
    started = ended - timedelta(seconds=report.duration_s)
    run_id = report.run["run_id"] if report.run else None
    sinks = [g for g in report.groups if g.sink]
    row = (
        report.pipeline,
        run_id,
        f"{socket.gethostname()}:{os.getpid()}",
        started.isoformat(timespec="seconds"),
        ended.isoformat(timespec="seconds"),
        report.duration_s,
        report.finish_reason,
        report.exit_code,
        sum(g.stored or g.processed for g in sinks),
        report.dead_letters,
        report.lost,
        report.error or (report.errors[0]["error"] if report.errors else None),
        report.dead_letter_path,
        report_html,
        json.dumps({g.name: {"received": g.received, "processed": g.processed, "dead_lettered": g.dead_lettered,
                             "emitted": g.emitted, "stored": g.stored} for g in report.groups}),
    )  # fmt: skip
    connection = _connect(path or history_path())
    try:
        with connection:  # one transaction: the row and the trimming, or nothing
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO runs (pipeline, run_id, process, started, ended, duration_s, finish_reason, exit_code,"
                " stored, dead_letters, lost, first_error, dead_letter_path, report_html, groups)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            oldest = (ended - timedelta(days=KEEP_DAYS)).isoformat(timespec="seconds")
            connection.execute(
                "DELETE FROM runs WHERE pipeline = ? AND (ended < ? OR id NOT IN"
                " (SELECT id FROM runs WHERE pipeline = ? ORDER BY id DESC LIMIT ?))",
                (report.pipeline, oldest, report.pipeline, KEEP_RUNS),
            )
    finally:
        connection.close()


def last_runs(pipeline: str, count: int, *, path: Path | None = None) -> list[dict[str, Any]]:
    """The pipeline's last `count` runs, newest first (a split run's processes each a row, its run id on each)."""
    where = path or history_path()
    if not where.exists():
        return []
    connection = _connect(where)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute(
            "SELECT * FROM runs WHERE pipeline = ? ORDER BY id DESC LIMIT ?", (pipeline, count)
        ).fetchall()
    finally:
        connection.close()
    return [dict(row) for row in rows]


def last_success(pipeline: str, *, path: Path | None = None) -> str | None:
    """When the pipeline's last run that ended with exit 0 ended (ISO time), if one is recorded."""
    where = path or history_path()
    if not where.exists():
        return None
    connection = _connect(where)
    try:
        row = connection.execute(
            "SELECT ended FROM runs WHERE pipeline = ? AND exit_code = 0 ORDER BY id DESC LIMIT 1", (pipeline,)
        ).fetchone()
    finally:
        connection.close()
    return row[0] if row else None


def verdict(run: dict[str, Any]) -> str:
    """One line: how it ended, what it stored, its dead letters, the first error."""
    parts = [f"exit {run['exit_code']} ({run['finish_reason']})", f"stored {run['stored']}"]
    parts.append(f"{run['dead_letters']} dead letters" if run["dead_letters"] else "no dead letters")
    if run["lost"]:
        parts.append(f"{run['lost']} LOST")
    if run["first_error"]:
        parts.append(f"first error: {' '.join(str(run['first_error']).split())[:120]}")
    return ", ".join(parts)


def table(runs: list[dict[str, Any]]) -> str:
    """The runs as the lines `--history` prints."""
    if not runs:
        return "no runs recorded yet"
    lines = [f"{'started (UTC)':<26}{'seconds':>9}  {'run id':<14}verdict"]
    for run in runs:
        lines.append(f"{run['started']:<26}{run['duration_s']:>9.1f}  {(run['run_id'] or '-')[:12]:<14}{verdict(run)}")
    return "\n".join(lines)
