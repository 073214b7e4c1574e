"""The command line: its help, and stopping a run with SIGTERM / SIGINT without losing an item."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sites import SP500_PAGE, FakeSites, Fault, chart_body, price_for

from conftest import ROOT, local_pipeline, run_main
from workers.wiki_worker import parse_constituents
from workers.yahoo_pages import yahoo_symbol

SHUTDOWN_TIMEOUT_S = 8.0
START_TIMEOUT_S = 30.0
# One Yahoo instance, no rate limit, 0.2 s per chart: 503 symbols would take ~100 s, so a run is mid-way
# when the signal comes.
SLOW_RUN = {"instances: 4": "instances: 1", "requests_per_second: 5": "requests_per_second: 0"}


def test_help_documents_the_options():
    result = run_main(["--help"], timeout_s=30)

    assert result.returncode == 0
    for option in ("--pipeline", "--stats-json", "--shutdown-timeout"):
        assert option in result.stdout


def test_unknown_option_is_refused():
    result = run_main(["--pipeline-file", "x.yaml"], timeout_s=30)

    assert result.returncode == 2
    assert "--pipeline-file" in result.stderr


def test_missing_pipeline_file_is_a_config_error(tmp_path):
    result = run_main(["--pipeline", str(tmp_path / "nope.yaml")], env={"DATA_DIR": str(tmp_path)}, timeout_s=30)

    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def chart_hits(sites: FakeSites) -> int:
    return sum(count for path, count in list(sites.hits.items()) if path.startswith("/v8/finance/chart/"))


def stored_symbols(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT symbol FROM prices")).scalars())
    finally:
        engine.dispose()


@dataclass
class Interrupted:
    """What a run stopped by a signal left behind."""

    returncode: int
    stop_s: float
    stats: dict | None
    stored: list[str]
    letters: list[dict]
    stdout: str
    log: str


def run_and_signal(
    sites: FakeSites, tmp_path: Path, pg_url: str, signum: int, ready: Callable[[], bool]
) -> Interrupted:
    """Start main on the slow pipeline, send `signum` once `ready()` holds, and wait for main to end."""
    stats_path, dead_letter_path = tmp_path / "stats.json", tmp_path / "dead.jsonl"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTGRES_", "DATABASE_URL", "PIPELINE_LOCATION", "DEAD_LETTER_PATH", "DATA_DIR"))
    }
    env.update(
        ENV_FILE=os.devnull,
        DATABASE_URL=pg_url,
        DATA_DIR=str(tmp_path / "data"),
        DEAD_LETTER_PATH=str(dead_letter_path),
    )
    pipeline = local_pipeline(sites, tmp_path, **SLOW_RUN)
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:  # files: a full pipe cannot block main
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "main.py"),
                "--pipeline",
                str(pipeline),
                "--stats-json",
                str(stats_path),
                "--shutdown-timeout",
                str(SHUTDOWN_TIMEOUT_S),
            ],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not ready():
                assert proc.poll() is None, f"main ended early with {proc.returncode}: {stderr_path.read_text()}"
                assert time.monotonic() < deadline, f"not ready after {START_TIMEOUT_S}s: {dict(sites.hits)}"
                time.sleep(0.05)
            signalled = time.monotonic()
            proc.send_signal(signum)
            returncode = proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 10)
            stop_s = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    letters = (
        [json.loads(line) for line in dead_letter_path.read_text().splitlines()] if dead_letter_path.exists() else []
    )
    return Interrupted(
        returncode,
        stop_s,
        json.loads(stats_path.read_text()) if stats_path.exists() else None,
        stored_symbols(pg_url),
        letters,
        stdout_path.read_text(),
        stderr_path.read_text(),
    )


def symbol_of(letter: dict) -> str:
    """A Yahoo dead letter holds the symbol; a sink dead letter holds the whole record."""
    return letter["item"]["symbol"] if isinstance(letter["item"], dict) else letter["item"]


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_run_and_accounts_for_every_symbol(tmp_path, pg_url, signum, exit_code):
    with FakeSites(latency_s=0.2) as sites:
        run = run_and_signal(sites, tmp_path, pg_url, signum, ready=lambda: chart_hits(sites) >= 5)

    assert run.returncode == exit_code, run.log
    assert run.stop_s < SHUTDOWN_TIMEOUT_S, f"took {run.stop_s:.1f}s to stop"
    assert run.stats is not None, "no stats: main was cut off at the deadline instead of stopping cleanly"
    stats = run.stats
    assert stats["finish_reason"] == "interrupted"
    assert (stats["signal"], stats["exit_code"]) == (signum, exit_code)
    assert stats["lost"] == 0
    for name, group in stats["groups"].items():
        assert group["received"] == group["processed"] + group["dead_lettered"], name
        assert group["in_flight"] == 0 and group["crashed"] == 0, name

    symbols = parse_constituents(SP500_PAGE.read_bytes())
    assert stats["groups"]["WikiWorker"]["emitted"] == len(symbols)
    assert 0 < len(run.stored) < len(symbols)  # stopped mid-way, after some rows were written
    assert len(run.stored) == stats["groups"]["PostgresWorker"]["stored"]
    assert len(run.letters) == stats["dead_letters"]
    dead = [symbol_of(letter) for letter in run.letters]
    assert sorted(run.stored + dead) == sorted(symbols)  # each symbol exactly once: stored or dead-lettered
    summary = run.stdout.strip()
    assert summary.startswith("pipeline: interrupted") and summary.endswith(f"exit {exit_code}"), summary


def test_price_fetched_during_the_stop_is_stored(tmp_path, pg_url):
    symbols = parse_constituents(SP500_PAGE.read_bytes())
    in_hand = symbols[5]  # one Yahoo instance takes the symbols in page order
    path = f"/v8/finance/chart/{yahoo_symbol(in_hand)}"
    with FakeSites(latency_s=0.2) as sites:
        sites.script(path, Fault(200, chart_body(yahoo_symbol(in_hand), price_for(yahoo_symbol(in_hand))), delay_s=2.0))
        run = run_and_signal(sites, tmp_path, pg_url, signal.SIGTERM, ready=lambda: sites.hits[path] >= 1)

    assert run.returncode == 143, run.log
    assert run.stats is not None and run.stats["finish_reason"] == "interrupted"
    assert run.stats["groups"]["YahooFinanceWorker"]["processed"] == 6  # the price in hand was fetched ...
    assert in_hand in run.stored, [letter for letter in run.letters if symbol_of(letter) == in_hand]  # ... and kept
    assert run.stats["groups"]["PostgresWorker"]["dead_lettered"] == 0


# --- log level -------------------------------------------------------------------------------------


def write_env_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "env.local"
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


@pytest.mark.parametrize("level", ["debug", "DEBUG", "Debug"])
def test_log_level_from_the_env_file_in_any_case(tmp_path, level):
    env_file = write_env_file(tmp_path, LOG_LEVEL=level)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "queues:\n  - name: Q\nworkers:\n"
        "  - {name: Source, location: fixture_workers, class: Source, input_values: [1, 2], "
        "output_queues: [Q]}\n"
        "  - {name: Sink, location: fixture_workers, class: Collect, input_queue: Q, params: {key: k}}\n"
    )

    result = run_main(
        ["--pipeline", str(pipeline), "--quiet"],
        timeout_s=30,
        env={"ENV_FILE": str(env_file), "PYTHONPATH": str(ROOT / "tests"), "DATA_DIR": str(tmp_path)},
    )

    assert result.returncode == 0, result.stderr
    # The level from the file took effect (it used to be read before the file was loaded).
    assert " DEBUG " in result.stderr and "every producer ended" in result.stderr


def test_log_level_flag_in_lower_case_is_accepted(tmp_path):
    pipeline = ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"

    result = run_main(["--pipeline", str(pipeline), "--check", "--log-level", "warning"], timeout_s=30)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("where", ["env file", "flag"])
def test_unknown_log_level_is_a_config_error_with_stats(tmp_path, where):
    stats = tmp_path / "stats.json"
    args = ["--pipeline", str(ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"), "--stats-json", str(stats)]
    env = {"DATA_DIR": str(tmp_path)}
    if where == "flag":
        args += ["--log-level", "loud"]
    else:
        env["ENV_FILE"] = str(write_env_file(tmp_path, LOG_LEVEL="loud"))

    result = run_main(args, env=env, timeout_s=30)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "loud" in result.stdout + result.stderr
    written = json.loads(stats.read_text())
    assert written["finish_reason"] == "config-error" and written["exit_code"] == 2 and "loud" in written["error"]
