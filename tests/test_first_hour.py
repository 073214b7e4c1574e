"""The first hour of a new user (issue 19, item 5), each as it was found: `python3 main.py` outside the venv, a
`--set` with a short name, `--help` without the exit codes and the environment, a config error that counted the
input values as "not started", the one-line summary of a run with no network."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from main_process import SOURCE_AND_SINK, main_env

from conftest import ROOT
from core.pipeline.problems import did_you_mean

TIMEOUT_S = 60.0


def main(args: list[str], tmp_path, *, python: str = sys.executable, env=None) -> subprocess.CompletedProcess:
    command = [python, str(ROOT / "main.py"), *args]
    return subprocess.run(
        command, env=env or main_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def test_main_outside_the_venv_says_which_python_to_use(tmp_path):
    """A Python without the requirements (no dotenv, no yaml): one line, not a ModuleNotFoundError traceback."""
    empty = tmp_path / "no-packages"
    empty.mkdir()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        [sys.executable, "-S", "-c", f"import runpy, sys; sys.path[:0] = [{str(ROOT)!r}]; sys.argv = ['main.py', '--check']; runpy.run_path({str(ROOT / 'main.py')!r}, run_name='__main__')"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot import" in done.stderr and ".venv/bin/python main.py" in done.stderr
    assert "pip install -r requirements.txt" in done.stderr


def test_a_set_with_a_short_group_name_suggests_the_one_meant(tmp_path):
    assert did_you_mean("Yahoo", ["WikiWorker", "YahooFinanceWorker", "PostgresWorker"]) == (
        "; did you mean 'YahooFinanceWorker'?"
    )
    assert did_you_mean("yahoofinanceworker", ["YahooFinanceWorker"]) == "; did you mean 'YahooFinanceWorker'?"
    assert did_you_mean("Zeta", ["WikiWorker", "YahooFinanceWorker"]) == ""


def test_help_lists_the_exit_codes_and_the_environment(tmp_path):
    shown = main(["--help"], tmp_path).stdout
    for code in ("0 ", "1 ", "2 ", "75 ", "130", "143"):
        assert f"\n  {code}" in shown or f" {code}" in shown, code
    for variable in (
        "PIPELINE_LOCATION",
        "DATABASE_URL",
        "POSTGRES_HOST",
        "REDIS_URL",
        "RUN_ID",
        "DATA_DIR",
        "LOG_LEVEL",
    ):
        assert variable in shown, variable
    assert "exit codes:" in shown and "environment:" in shown


def test_a_config_error_does_not_count_the_input_values_as_not_started(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(SOURCE_AND_SINK.format(values=list(range(2000)), sink="Colect", params="{}"))

    done = main(["--pipeline", str(path)], tmp_path)

    assert done.returncode == 2
    assert "not started" not in done.stdout, done.stdout


def test_a_run_without_network_says_so_in_one_short_line(tmp_path):
    """The offline failure was one 600-character line naming the URL three times and never saying "no network?"."""
    path = tmp_path / "offline.yaml"
    path.write_text(
        textwrap.dedent("""\
        queues:
          - {name: Symbols, maxsize: 10}
        workers:
          - {name: Wiki, location: workers.wiki_worker, class: WikiWorkerMasterScheduler,
             input_values: ["http://sp500.invalid/wiki/List"], output_queues: [Symbols],
             params: {retries: 0, connect_timeout_s: 2}}
          - {name: Sink, location: fixture_workers, class: Collect, input_queue: Symbols, params: {key: offline}}
        """)
    )

    done = main(["--pipeline", str(path), "--quiet"], tmp_path)

    [summary] = done.stdout.splitlines()
    assert done.returncode == 1
    assert len(summary) < 400, summary
    assert summary.count("sp500.invalid") <= 1, summary
    assert "no network?" in summary or "cannot be reached" in summary, summary
    assert "--offline demo/" in summary, summary  # the way to see it work without one
