"""The README's demo: `python main.py --offline demo/` on a fresh copy of the repository runs the whole shipped job
from the cassette in demo/: 503 rows into demo/'s SQLite file (not the configured database), exit 0, and no socket
opened to anything but this machine."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from core.http.offline import is_local

DEMO_COMMAND = ".venv/bin/python main.py --offline demo/"
TIMEOUT_S = 120


def fresh_copy(to: Path) -> Path:
    """The files a clone of the repository would hold (tracked, or new and not ignored), as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = to / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return to


def readme_demo_command() -> str:
    """The README's demo line: the first command, then main.py from the demo."""
    commands = re.findall(r"^python3 -m venv .*$", (ROOT / "README.md").read_text(), flags=re.M)
    [demo] = [command for command in commands if "--offline" in command]
    return demo.split(" && ")[-1]


def local(line: str) -> bool:
    """A line of the connection log (tests/connect_log): to this machine, or to a socket file."""
    host = (line.split(" ") + [""])[1]
    return host.startswith("unix:") or is_local(None if host == "None" else host)


def test_the_readme_demo_runs_the_shipped_job_offline_from_a_fresh_copy(tmp_path: Path) -> None:
    assert readme_demo_command() == DEMO_COMMAND
    clone = fresh_copy(tmp_path / "clone")
    log = tmp_path / "connect.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "DATABASE_URL", "PIPELINE_", "DATA_"))}
    env |= {
        # a configured database, which the demo must leave alone: it has no server to be reached at
        "DATABASE_URL": "postgresql+psycopg2://postgres:pw-not-shown@127.0.0.1:9/prices",
        "CONNECT_LOG": str(log),
        "PYTHONPATH": str(ROOT / "tests" / "connect_log"),
    }
    done = subprocess.run(
        [sys.executable, *DEMO_COMMAND.split()[1:]],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    summary = done.stdout.splitlines()[-1]
    assert "stored 503" in summary and "no dead letters" in summary and summary.endswith("exit 0"), summary
    assert "DEMO PRICES" in output and "not market data" in output  # said, never presented as market data
    assert "pw-not-shown" not in output
    assert "hint:" not in output  # a recording's waits say nothing of how the real run should be scaled
    with sqlite3.connect(clone / "demo" / "wiki_yahoo_scraper_pipeline.sqlite") as db:
        [(rows, symbols)] = db.execute("SELECT count(*), count(DISTINCT symbol) FROM prices").fetchall()
    assert (rows, symbols) == (503, 503)
    assert not (clone / "data" / "prices.sqlite3").exists()
    lines = log.read_text().splitlines() if log.exists() else []
    assert [line for line in lines if not local(line)] == [], lines
    assert not [line for line in lines if line.endswith(" 9")], lines  # the configured database was not tried


def test_the_demo_cassette_is_what_make_cassette_writes(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(ROOT / "demo", folder, ignore=shutil.ignore_patterns("*.sqlite"))
    (folder / "sp500.demo.jsonl").unlink()
    made = subprocess.run(
        [sys.executable, str(folder / "make_cassette.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert made.returncode == 0, made.stderr
    assert "503 symbols, 506 answers" in made.stdout
    assert (folder / "sp500.demo.jsonl").read_bytes() == (ROOT / "demo" / "sp500.demo.jsonl").read_bytes()


def test_the_courses_pipeline_file_runs_from_the_demo_too(tmp_path: Path) -> None:
    clone = fresh_copy(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "DATABASE_URL", "PIPELINE_", "DATA_"))}
    done = subprocess.run(
        [sys.executable, "main.py", "--offline", "demo/", "--pipeline", "pipelines/wiki_yahoo_scrapper_pipeline.yaml"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stored 503" in done.stdout.splitlines()[-1]
    with sqlite3.connect(clone / "demo" / "wiki_yahoo_scrapper_pipeline.sqlite") as db:
        assert db.execute("SELECT count(*) FROM prices").fetchall() == [(503,)]
