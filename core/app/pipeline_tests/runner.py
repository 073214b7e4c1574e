"""Running a pipeline's tests: each in a fresh `python main.py` of its own (its own ledger, dead letters, data
folder and throwaway SQLite database), offline (HTTP from the test's cassette or responses, nothing sent), in the
mode the pipeline declares; then one line per test, the differences of those that failed, and a summary."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from core.app.pipeline_tests.cases import Case
from core.app.pipeline_tests.derive import derived, outputs_file
from core.app.pipeline_tests.expect import Got, differences
from core.app.recording import OFFLINE_DATABASE_ENV
from core.base import codec
from core.base.paths import PROJECT_DIR, module_search_paths
from core.http import tape

LOG_LINES_SHOWN = 8
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?")


@dataclass
class Result:
    """How one test went: passed, failed (with the differences) or error (it could not be run or judged)."""

    case: Case
    status: str
    seconds: float
    details: list[str] = field(default_factory=list)
    got: Got | None = None


def run_case(case: Case, pipeline: Path, raw: dict[str, Any], name: str) -> Result:
    """Run one test in a folder of its own, removed after."""
    started, started_at = time.monotonic(), datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="pipeline-test-") as tmp:
        folder = Path(tmp)
        path = folder / f"{name}.yaml"  # the pipeline's own name: its cassettes are found by it
        path.write_text(yaml.safe_dump(derived(raw, case, folder), sort_keys=False), encoding="utf-8")
        cassettes = case.http or _write_responses(folder / "http", name, case.responses)
        stats = folder / "stats.json"
        command = [sys.executable, str(PROJECT_DIR / "main.py"), "--pipeline", str(path), "--offline", str(cassettes)]
        command += ["--quiet", "--stats-json", str(stats), "--log-level", "WARNING"]
        try:
            done = subprocess.run(
                command,
                env=_environment(folder, pipeline),
                capture_output=True,
                text=True,
                timeout=case.timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return Result(
                case, "error", time.monotonic() - started, [f"the run did not end within timeout_s={case.timeout_s:g}"]
            )
        try:
            got = _got(case, folder, stats)
            got.started, got.ended = started_at, datetime.now(UTC)
        except (OSError, ValueError, sqlite3.Error) as exc:
            log = (done.stderr or "").strip().splitlines()[-LOG_LINES_SHOWN:]
            return Result(case, "error", time.monotonic() - started, [f"the run left no report ({exc})", *log])
        found = differences(case, got)
        if got.finish_reason == "config-error" and found:
            log = [line for line in (done.stderr or "").splitlines() if "ERROR" in line or ": " in line][
                -LOG_LINES_SHOWN:
            ]
            return Result(case, "error", time.monotonic() - started, ["the derived run was refused:", *log], got)
        return Result(case, "failed" if found else "passed", time.monotonic() - started, found, got)


def _environment(folder: Path, pipeline: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "POSTGRES_", "PIPELINE_"))}
    paths = [*module_search_paths(pipeline), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env |= {
        "DATA_DIR": str(folder / "data"),
        "DEAD_LETTER_PATH": str(folder / "dead_letters.jsonl"),
        OFFLINE_DATABASE_ENV: str(folder / "stored.sqlite"),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
        "RUN_ID": "",
    }
    return env


def _write_responses(folder: Path, name: str, responses: list[dict[str, Any]]) -> Path:
    """The test's inline responses as a cassette (none: every request fails as not recorded)."""
    folder.mkdir()
    answers = [tape.answer_line(r["method"], r["url"], r["status"], "", r["headers"], r["body"]) for r in responses]
    head = tape.header(name, "test", started="1970-01-01T00:00:00+00:00", note="the test's responses")
    tape.write_cassette(folder / f"{name}{tape.SUFFIX}", head, answers)
    return folder


def _got(case: Case, folder: Path, stats: Path) -> Got:
    report = json.loads(stats.read_text(encoding="utf-8"))
    got = Got(exit_code=int(report.get("exit_code", -1)), finish_reason=str(report.get("finish_reason", "?")))
    letters = folder / "dead_letters.jsonl"
    if letters.exists():
        for text in letters.read_text(encoding="utf-8").splitlines():
            letter = json.loads(text)
            got.dead_letters.append({**letter, "item": codec.decode(letter.get("item"))})
    if case.group:
        path = outputs_file(folder, case.queue) if case.queue else None  # no queue: a sink, which sends nothing on
        lines = path.read_text(encoding="utf-8").splitlines() if path and path.exists() else []
        got.outputs = [_output(text) for text in lines]
    database = folder / "stored.sqlite"
    if database.exists():
        got.rows = _rows(database, case.expect.get("table"))
    return got


def _output(text: str) -> Any:
    """An output as the stage sent it; one only a repr could be kept of (a lock, a socket) as its JSON, tag and all."""
    try:
        return codec.loads(text)
    except codec.Undecodable:
        return json.loads(text)


def _rows(database: Path, table: str | None) -> list[dict[str, Any]]:
    with sqlite3.connect(database) as db:
        tables = [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        ]
        if table is None:
            if len(tables) != 1:
                raise ValueError(
                    f"the sink stored into {len(tables)} tables ({', '.join(tables)}): name one with expect.table"
                )
            table = tables[0]
        db.row_factory = sqlite3.Row
        rows = [dict(row) for row in db.execute(f'SELECT * FROM "{table}" ORDER BY rowid')]  # noqa: S608
    for row in rows:
        row.pop("id", None)
        for key, value in row.items():
            if isinstance(value, str) and TIMESTAMP.fullmatch(value):  # SQLite keeps times as text, in UTC
                row[key] = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return rows
