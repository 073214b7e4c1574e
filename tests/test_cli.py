"""The operator's command line, run as a user would: --check, --graph, --set, ${VAR}, status, report, logging.

Each test runs `python main.py` in a subprocess with a timeout. Pipelines made of fixture workers need
tests/ on PYTHONPATH; the shipped pipeline runs against the local fake sites (no network) and stores into
the SQLite file under a temporary DATA_DIR.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pipeline_text import line, write
from sites import FakeSites

from conftest import ROOT, SHIPPED_PIPELINE, MainRun, local_pipeline, run_main
from core.pipeline.imports import init_params
from workers.yahoo_finance_worker import YahooFinancePriceScheduler

TESTS_DIR = Path(__file__).resolve().parent
TIMEOUT_S = 60.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
UNSET = "PIPELINE_TEST_NEVER_SET_VAR"

VALID = """\
queues:
  - name: Numbers
    maxsize: 10
workers:
  - name: Source
    location: fixture_workers
    class: Source
    input_values: [1, 2, 3]
    output_queues: [Numbers]
  - name: Sink
    location: fixture_workers
    class: Collect
    input_queue: Numbers
    params:
      key: cli-test
"""

# 20 items through one instance sleeping `delay_s` each: a run of 1.5 s. The source ends once the queue has
# taken its last item, after ~0.7 s; the status lines after that show the total and an ETA.
SLOW = """\
queues:
  - name: Numbers
    maxsize: 10
workers:
  - name: Source
    location: fixture_workers
    class: Source
    input_values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    output_queues: [Numbers]
  - name: Slow
    location: fixture_workers
    class: Slow
    input_queue: Numbers
    params:
      delay_s: 0.075
"""

SHIPPED_GRAPH = """\
flowchart LR
    in_WikiWorker[/"https://en.wikipedia.org/wiki/List_of_S%26P_500_companies"/]
    w_WikiWorker["WikiWorker (1 thread)<br/>WikiWorkerMasterScheduler"]
    w_YahooFinanceWorker["YahooFinanceWorker (4 threads)<br/>YahooFinancePriceScheduler"]
    w_PostgresWorker["PostgresWorker (1 thread)<br/>PostgresMasterScheduler"]
    q_SymbolQueue[("SymbolQueue ≤1000")]
    q_PostgresUploading[("PostgresUploading ≤1000")]
    in_WikiWorker --> w_WikiWorker
    w_WikiWorker --> q_SymbolQueue
    q_SymbolQueue --> w_YahooFinanceWorker
    w_YahooFinanceWorker --> q_PostgresUploading
    q_PostgresUploading --> w_PostgresWorker
"""


def fixture_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a run of fixture workers: tests/ importable, local files under tmp_path."""
    return {"PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(ROOT)]), "DATA_DIR": str(tmp_path / "data"), **extra}


def main(args: list[str], tmp_path: Path, **env: str) -> MainRun:
    """Run main.py on fixture workers with `env` added."""
    return run_main(args, env=fixture_env(tmp_path, **env), timeout_s=TIMEOUT_S)


def assert_refused(result: MainRun, expected: list[str], *, run: bool = False) -> None:
    """Exit 2, exactly `expected` on stderr followed by one error log line; on stdout nothing for --check,
    the one-line summary of a run that never ran for a run."""
    assert result.returncode == 2, result.stderr
    if run:
        assert re.fullmatch(
            r"\S+: config-error \(.+\); nothing was run(; \d+ input value\(s\) not started)?; exit 2\n", result.stdout
        ), result.stdout
    else:
        assert result.stdout == ""
    *problems, last = result.stderr.splitlines()
    assert problems == expected
    assert LOG_LINE.match(last) and last.endswith(
        f"ERROR   MainThread main: {len(expected)} problem(s) in the pipeline file; nothing was run"
    ), last


def stats(path: Path) -> dict:
    """The --stats-json file."""
    return json.loads(path.read_text())


def status_lines(stderr: str) -> list[str]:
    """The plain status lines in a log, without their timestamp and logger prefix."""
    return [
        text.split("core.app.status: ", 1)[1] for text in stderr.splitlines() if " core.app.status: status " in text
    ]


def test_help_documents_the_operator_flags():
    result = run_main(["--help"], timeout_s=TIMEOUT_S)

    assert result.returncode == 0
    for flag in ("--check", "--graph", "--set", "--quiet", "--status-interval", "--log-level", "--log-file"):
        assert flag in result.stdout, flag


# --- --check ---------------------------------------------------------------------------------------------


def test_check_of_the_shipped_pipeline_prints_ok_and_runs_nothing(tmp_path):
    result = run_main(
        ["--check", "--pipeline", str(SHIPPED_PIPELINE)], env={"DATA_DIR": str(tmp_path / "data")}, timeout_s=TIMEOUT_S
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{SHIPPED_PIPELINE}: OK, 2 queues, 3 worker groups\n  WikiWorker: 1 thread\n"
        "  YahooFinanceWorker: 4 threads\n  PostgresWorker: 1 thread\n"
    )
    assert result.stderr == ""
    assert not (tmp_path / "data").exists()  # no lock, no database file, no dead letters


def test_check_with_a_valid_set_is_ok(tmp_path):
    path = write(tmp_path, VALID)

    result = main(["--check", "--pipeline", str(path), "--set", "workers.Sink.instances=3"], tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK, 1 queues, 2 worker groups\n  Source: 1 thread\n  Sink: 3 threads\n"


# Each case: the file's text, --set arguments, and the problems expected in order: (needle, "key: message")
# for a problem on the file's line holding `needle`, or the whole line for a problem of a --set argument.
BROKEN = {
    "unknown key": (
        VALID.replace("    input_queue: Numbers\n", "    input_queue: Numbers\n    instance: 2\n"),
        [],
        [("instance: 2", "workers[1].instance: unknown key; did you mean 'instances'?")],
    ),
    "unknown queue": (
        VALID.replace("input_queue: Numbers", "input_queue: Numbrs"),
        [],
        [
            ("name: Numbers", "queues.Numbers: no worker reads this queue"),
            ("input_queue: Numbrs", "workers.Sink.input_queue: unknown queue 'Numbrs'; did you mean 'Numbers'?"),
        ],
    ),
    "unimportable module": (
        VALID.replace("location: fixture_workers\n    class: Collect", "location: fixture_workerz\n    class: Collect"),
        [],
        [
            (
                "fixture_workerz",
                "workers.Sink.location: cannot import module 'fixture_workerz': "
                "No module named 'fixture_workerz'; looked on PYTHONPATH, in the installed packages "
                "and in <tmp_path> (the pipeline file's folder), <ROOT> (the working directory, "
                "the project folder)",
            )
        ],
    ),
    "unknown param": (
        VALID.replace("      key: cli-test\n", "      key: cli-test\n      colour: red\n"),
        [],
        [("colour: red", "workers.Sink.params.colour: Collect takes no parameter 'colour' (it takes: key)")],
    ),
    "unset variable": (
        VALID.replace("maxsize: 10", f"maxsize: ${{{UNSET}}}"),
        [],
        [
            (
                "maxsize",
                f"queues[0].maxsize: environment variable {UNSET} is not set "
                f"(write ${{{UNSET}:-default}} for a default)",
            )
        ],
    ),
    "bad --set path": (
        VALID,
        ["instances=3"],
        ["--set instances=3: --set: expected section.name.key=value, e.g. workers.YahooFinanceWorker.instances=16"],
    ),
    "several at once": (
        VALID.replace("maxsize: 10", "max_size: 10").replace("key: cli-test", f"key: ${{{UNSET}}}"),
        ["workers.Snk.instances=2", "workers.Source.instances=0"],
        [
            "--set workers.Snk.instances=2: workers.Snk: no such entry in workers; did you mean 'Sink'?",
            "--set workers.Source.instances=0: workers[0].instances: must be at least 1, got 0",
            ("max_size", "queues[0].max_size: unknown key; did you mean 'maxsize'?"),
            (
                "key: $",
                f"workers[1].params.key: environment variable {UNSET} is not set "
                f"(write ${{{UNSET}:-default}} for a default)",
            ),
        ],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("check", [True, False], ids=["check", "run"])
def test_broken_file_is_refused_with_every_problem_and_its_line(tmp_path, case, check):
    """--check prints each problem as file:line: key: message and exits 2; a plain run checks the same first."""
    assert UNSET not in os.environ
    text, sets, problems = BROKEN[case]
    path = write(tmp_path, text)
    expected = [
        problem if isinstance(problem, str) else f"{path}:{line(text, problem[0])}: {problem[1]}"
        for problem in problems
    ]
    expected = [problem.replace("<tmp_path>", str(tmp_path)).replace("<ROOT>", str(ROOT)) for problem in expected]
    args = ["--pipeline", str(path), *[f"--set={s}" for s in sets]] + (["--check"] if check else [])

    result = main(args, tmp_path)

    assert_refused(result, expected, run=not check)
    assert not (tmp_path / "data").exists()


def test_check_of_a_missing_file(tmp_path):
    result = main(["--check", "--pipeline", str(tmp_path / "nowhere.yaml")], tmp_path)

    assert_refused(
        result, [f"{tmp_path / 'nowhere.yaml'}:0: file: cannot read pipeline file: No such file or directory"]
    )


# --- --graph -----------------------------------------------------------------------------------------------


def test_graph_of_the_shipped_pipeline(tmp_path):
    result = run_main(
        ["--graph", "--pipeline", str(SHIPPED_PIPELINE)], env={"DATA_DIR": str(tmp_path / "data")}, timeout_s=TIMEOUT_S
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == SHIPPED_GRAPH
    assert result.stderr == ""
    assert not (tmp_path / "data").exists()


def test_graph_shows_set_overrides(tmp_path):
    result = run_main(
        [
            "--graph",
            "--pipeline",
            str(SHIPPED_PIPELINE),
            "--set",
            "workers.YahooFinanceWorker.instances=16",
            "--set",
            "queues.SymbolQueue.maxsize=50",
        ],
        timeout_s=TIMEOUT_S,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        SHIPPED_GRAPH.replace("YahooFinanceWorker (4 threads)", "YahooFinanceWorker (16 threads)").replace(
            "SymbolQueue ≤1000", "SymbolQueue ≤50"
        )
    )


def test_check_and_graph_say_where_each_group_runs(tmp_path):
    modes = [
        "--set",
        "workers.YahooFinanceWorker.class=YahooFinancePriceAsyncScheduler",
        "--set",
        "workers.YahooFinanceWorker.instances=128",
        "--set",
        "workers.PostgresWorker.processes=2",
    ]

    check = run_main(["--check", "--pipeline", str(SHIPPED_PIPELINE), *modes], timeout_s=TIMEOUT_S)
    graph = run_main(["--graph", "--pipeline", str(SHIPPED_PIPELINE), *modes], timeout_s=TIMEOUT_S)

    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines()[1:] == [
        "  WikiWorker: 1 thread",
        "  YahooFinanceWorker: 128 asyncio tasks",
        "  PostgresWorker: 2 processes x 1 thread",
    ]
    assert '["YahooFinanceWorker (128 asyncio tasks)<br/>YahooFinancePriceAsyncScheduler"]' in graph.stdout
    assert '["PostgresWorker (2 processes x 1 thread)<br/>PostgresMasterScheduler"]' in graph.stdout


def test_graph_of_several_input_values_and_quotes(tmp_path):
    text = VALID.replace("input_values: [1, 2, 3]", "input_values: ['say \"hi\"', two]\n    instances: 2")
    path = write(tmp_path, text)

    result = main(["--graph", "--pipeline", str(path)], tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == textwrap.dedent("""\
        flowchart LR
            in_Source[/"2 input values<br/>say #quot;hi#quot;<br/>two"/]
            w_Source["Source (2 threads)<br/>Source"]
            w_Sink["Sink (1 thread)<br/>Collect"]
            q_Numbers[("Numbers ≤10")]
            in_Source --> w_Source
            w_Source --> q_Numbers
            q_Numbers --> w_Sink
        """)


def test_graph_shows_a_source_of_many_values_as_one_node_with_a_count(tmp_path):
    """2,000 input values once made a 4,014-line chart, one node and one edge per value."""
    text = VALID.replace("input_values: [1, 2, 3]", f"input_values: {list(range(2000))}")
    path = write(tmp_path, text)

    result = main(["--graph", "--pipeline", str(path)], tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 8, result.stdout
    assert '    in_Source[/"2,000 input values<br/>0<br/>1<br/>2<br/>… 1,997 more"/]' in lines
    assert "    in_Source --> w_Source" in lines
    long = VALID.replace("input_values: [1, 2, 3]", f"input_values: [{'x' * 500}]")
    assert f'in_Source[/"{"x" * 59}…"/]' in main(["--graph", "--pipeline", str(write(tmp_path, long))], tmp_path).stdout


def test_graph_of_a_broken_file_exits_2(tmp_path):
    text = VALID.replace("input_queue: Numbers", "input_queue: Numbrs")
    path = write(tmp_path, text)

    result = main(["--graph", "--pipeline", str(path)], tmp_path)

    assert_refused(
        result,
        [
            f"{path}:{line(text, 'name: Numbers')}: queues.Numbers: no worker reads this queue",
            f"{path}:{line(text, 'Numbrs')}: workers.Sink.input_queue: unknown queue 'Numbrs'; did you mean 'Numbers'?",
        ],
    )


# --- --set ---------------------------------------------------------------------------------------------------


def test_set_overrides_take_effect_in_a_real_run(tmp_path):
    """instances, a param and a queue's maxsize, overridden without editing the file."""
    stats_path = tmp_path / "stats.json"
    with FakeSites() as sites:
        pipeline = local_pipeline(sites, tmp_path)
        result = run_main(
            [
                "--pipeline",
                str(pipeline),
                "--stats-json",
                str(stats_path),
                "--quiet",
                "--set",
                "workers.YahooFinanceWorker.instances=8",
                "--set",
                "workers.YahooFinanceWorker.params.requests_per_second=0",
                "--set",
                "queues.SymbolQueue.maxsize=50",
            ],
            env={"DATA_DIR": str(tmp_path / "data")},
            timeout_s=TIMEOUT_S,
        )

    assert result.returncode == 0, result.stderr
    report = stats(stats_path)
    assert report["groups"]["YahooFinanceWorker"]["instances"] == 8
    assert report["groups"]["WikiWorker"]["instances"] == 1
    assert report["queues"]["SymbolQueue"]["maxsize"] == 50
    assert report["queues"]["SymbolQueue"]["high_water"] <= 50
    assert report["queues"]["PostgresUploading"]["maxsize"] == 1000
    assert report["groups"]["PostgresWorker"]["stored"] == 503
    # The file's requests_per_second: 5 would space 503 requests over 100 s.
    assert report["duration_s"] < 50
    assert "instances: 4" in pipeline.read_text()  # the file itself is unchanged


def test_set_problems_name_the_flag(tmp_path):
    accepted = ", ".join(sorted(init_params(YahooFinancePriceScheduler)))
    sets = [
        "workers.YahooFinanceWorker.instances=0",
        "workers.YahooFinanceWorkr.instances=16",
        "queues.SymbolQueue.maxsize=lots",
    ]

    result = main(["--check", "--pipeline", str(SHIPPED_PIPELINE), *[f"--set={s}" for s in sets]], tmp_path)

    assert_refused(
        result,
        [
            "--set workers.YahooFinanceWorkr.instances=16: workers.YahooFinanceWorkr: no such entry in workers; "
            "did you mean 'YahooFinanceWorker'?",
            "--set queues.SymbolQueue.maxsize=lots: queues[0].maxsize: must be an integer, got a string",
            "--set workers.YahooFinanceWorker.instances=0: workers[1].instances: must be at least 1, got 0",
        ],
    )

    result = main(
        [
            "--check",
            "--pipeline",
            str(SHIPPED_PIPELINE),
            "--set",
            "workers.YahooFinanceWorker.params.request_per_second=2",
        ],
        tmp_path,
    )

    assert_refused(
        result,
        [
            "--set workers.YahooFinanceWorker.params.request_per_second=2: "
            "workers.YahooFinanceWorker.params.request_per_second: YahooFinancePriceScheduler takes no parameter "
            f"'request_per_second'; did you mean 'requests_per_second'? (it takes: {accepted})"
        ],
    )


# --- ${VAR} ----------------------------------------------------------------------------------------------------

ENV_PIPELINE = """\
queues:
  - name: Numbers
    maxsize: ${QUEUE_SIZE:-7}
workers:
  - name: Source
    location: fixture_workers
    class: Source
    instances: ${SOURCE_INSTANCES}
    input_values:
      - ${BASE_URL}/a
      - ${BASE_URL:-http://unused.invalid}/b
      - $${LITERAL}
    output_queues: [Numbers]
  - name: Sink
    location: fixture_workers
    class: Collect
    instances: ${SINK_INSTANCES:-2}
    input_queue: Numbers
    params:
      key: env-test
"""


def test_variables_fill_the_pipeline_in_a_real_run(tmp_path):
    path = write(tmp_path, ENV_PIPELINE)
    stats_path = tmp_path / "stats.json"
    env = {"SOURCE_INSTANCES": "3", "BASE_URL": "http://127.0.0.1:9/x", "LITERAL": "not used"}

    result = main(["--pipeline", str(path), "--stats-json", str(stats_path), "--quiet"], tmp_path, **env)

    assert result.returncode == 0, result.stderr
    report = stats(stats_path)
    assert report["groups"]["Source"]["instances"] == 3
    assert report["groups"]["Sink"]["instances"] == 2
    assert report["queues"]["Numbers"]["maxsize"] == 7
    assert report["groups"]["Sink"]["received"] == 3

    graph = main(["--graph", "--pipeline", str(path)], tmp_path, **env)

    assert graph.returncode == 0, graph.stderr
    assert graph.stdout.splitlines()[1] == (
        '    in_Source[/"3 input values<br/>http://127.0.0.1:9/x/a<br/>http://127.0.0.1:9/x/b<br/>${LITERAL}"/]'
    )
    assert '    w_Source["Source (3 threads)<br/>Source"]' in graph.stdout
    assert '    w_Sink["Sink (2 threads)<br/>Collect"]' in graph.stdout
    assert '    q_Numbers[("Numbers ≤7")]' in graph.stdout


def test_unset_variable_stops_a_run_naming_its_line(tmp_path):
    path = write(tmp_path, ENV_PIPELINE)

    result = main(["--pipeline", str(path)], tmp_path, SOURCE_INSTANCES="2")

    assert_refused(
        result,
        [
            f"{path}:{line(ENV_PIPELINE, '- ${BASE_URL}/a')}: workers[0].input_values[0]: "
            "environment variable BASE_URL is not set (write ${BASE_URL:-default} for a default)"
        ],
        run=True,
    )
    assert not (tmp_path / "data").exists()


# --- live status ---------------------------------------------------------------------------------------------


def test_plain_status_lines_without_a_terminal(tmp_path):
    path = write(tmp_path, SLOW)

    result = main(["--pipeline", str(path), "--status-interval", "0.2"], tmp_path)

    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr + result.stdout
    lines = status_lines(result.stderr)
    assert len(lines) >= 3, result.stderr
    for text in lines:
        match = re.fullmatch(
            r"status \d+s: Source [01]/1 alive, \d+ in, \d+ done, 0 dead-lettered, \d+ out, 0 failed, \d+\.\d/s; "
            r"Slow [01]/1 alive, (\d+) in, (\d+) done, (\d+) dead-lettered, \d+ out, 0 failed, \d+\.\d/s; "
            r"queues Numbers \d+/10; (?:(\d+) done \((\d+) stored, 0 dead-lettered\), total not known yet|"
            r"(\d+)/20 done \(\d+%\): (\d+) stored, 0 dead-lettered(, about \d+s left)?)",
            text,
        )
        assert match, text
        received, done, dead = (int(n) for n in match.group(1, 2, 3))
        assert done + dead <= received <= done + dead + 1, text  # the rest is the one item in hand
        settled, stored = (int(n) for n in (match.group(4, 5) if match.group(4) else match.group(6, 7)))
        assert settled == stored == done, text  # Slow is the sink: what it did is what was stored
    assert any(
        re.search(r"\d+/20 done \(\d+%\): \d+ stored, 0 dead-lettered, about \d+s left$", text) for text in lines
    ), lines
    assert result.stdout.splitlines()[-1].startswith("pipeline: finished in ")


def test_quiet_turns_the_status_lines_off(tmp_path):
    path = write(tmp_path, SLOW)

    result = main(
        ["--pipeline", str(path), "--status-interval", "0.1", "--quiet", "--set", "workers.Slow.params.delay_s=0.03"],
        tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert status_lines(result.stderr) == []
    assert "core.app.status" not in result.stderr
    assert result.stdout.splitlines()[-1].startswith("pipeline: finished in ")


def run_in_pty(args: list[str], env: dict[str, str], timeout_s: float = TIMEOUT_S, on_output=None) -> tuple[int, str]:
    """Run main with stdin, stdout and stderr on a pseudo-terminal; return (exit code, everything it wrote).
    `on_output(process, text so far)` is called after each read."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "POSTGRES_",
                "DATABASE_URL",
                "PIPELINE_LOCATION",
                "DEAD_LETTER_PATH",
                "DATA_DIR",
                "NO_COLOR",
                "FORCE_COLOR",
                "TTY_",
                "COLUMNS",
                "LINES",
            )
        )
    }
    env = {**base, "ENV_FILE": os.devnull, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", **env}
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=env,
            cwd=ROOT,
            close_fds=True,
        )
    finally:
        os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed its end of the terminal
                break
            if not chunk:
                break
            output += chunk
            if on_output is not None:
                on_output(process, output.decode("utf-8", errors="replace"))
        else:
            process.kill()
            process.wait(10)
            pytest.fail(
                f"main did not end within {timeout_s}s in a terminal; wrote:\n{output.decode(errors='replace')}"
            )
        return process.wait(10), output.decode("utf-8", errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(controller)


def test_live_table_in_a_terminal(tmp_path):
    path = write(tmp_path, SLOW)

    # 20 x 80 ms; a queue that takes every item at once, so the total is known from the start and the
    # second refresh (after 1 s) has a rate to give an ETA from.
    code, output = run_in_pty(
        ["--pipeline", str(path), "--set", "workers.Slow.params.delay_s=0.08", "--set", "queues.Numbers.maxsize=20"],
        fixture_env(tmp_path),
    )

    assert code == 0, output
    assert "\x1b[" in output
    plain = ANSI.sub("", output)
    for header in (
        "group",
        "mode",
        "alive",
        "received",
        "done",
        "dead-lettered",
        "emitted",
        "failed",
        "busy%",
        "items/s",
        "queue",
        "size",
        "fill",
    ):
        assert header in plain, header
    assert re.search(r"Slow\s*│\s*threads\s*│\s*[01]/1\s*│", plain), plain
    assert re.search(r"Numbers\s*│\s*\d+/20\s*│\s*\d+%", plain), plain
    assert re.search(r"pipeline running for \d+s", plain), plain
    assert re.search(r"\d+/20 done \(\d+%\): \d+ stored, 0 dead-lettered, about \d+s left", plain), plain
    assert "status " not in plain  # the table replaces the plain lines
    summary = [text for text in plain.splitlines() if "pipeline: finished in " in text]
    assert len(summary) == 1 and summary[0].rstrip().endswith("exit 0"), plain  # once: it was printed twice


def test_quiet_in_a_terminal_shows_no_table(tmp_path):
    path = write(tmp_path, SLOW)

    code, output = run_in_pty(
        ["--pipeline", str(path), "--quiet", "--set", "workers.Slow.params.delay_s=0.02"], fixture_env(tmp_path)
    )

    assert code == 0, output
    assert not re.search("[┃│┏┗]", output)  # no table drawn
    assert "\x1b[?25l" not in output  # the live display hides the cursor; nothing did here
    assert output.count("pipeline: finished in ") == 1, output  # the log line and the printed one, on one terminal


def test_a_forced_exit_in_a_terminal_leaves_no_live_table_below_the_summary(tmp_path):
    """The live table's thread went on redrawing after a forced exit had printed the summary."""
    path = write(tmp_path, SLOW)
    signalled = []

    def interrupt_once_running(process, text):
        if not signalled and "pipeline running for" in text:
            signalled.append(True)
            process.send_signal(signal.SIGINT)  # Slow holds an item for 30 s: the stop cannot finish in time

    code, output = run_in_pty(
        ["--pipeline", str(path), "--shutdown-timeout", "0.5", "--set", "workers.Slow.params.delay_s=30"],
        fixture_env(tmp_path),
        on_output=interrupt_once_running,
    )

    plain = ANSI.sub("", output)
    assert code == 128 + signal.SIGINT, plain
    summary_at = plain.rindex("pipeline: forced")
    assert not re.search("[┃│┏┗]", plain[summary_at:]), plain[summary_at:]


# --- the run report ------------------------------------------------------------------------------------------


def test_run_report_names_the_slow_stage(tmp_path):
    path = write(tmp_path, SLOW)
    stats_path = tmp_path / "stats.json"

    # 100 items, 10 ms each: Slow is busy all the ~1 s run while its queue stays full.
    result = main(
        [
            "--pipeline",
            str(path),
            "--stats-json",
            str(stats_path),
            "--quiet",
            f"--set=workers.Source.input_values={list(range(100))}",
            "--set=workers.Slow.params.delay_s=0.01",
        ],
        tmp_path,
    )

    assert result.returncode == 0, result.stderr
    report = stats(stats_path)
    assert report["finish_reason"] == "finished"
    assert report["groups"]["Slow"]["busy_pct"] >= 80
    assert report["groups"]["Slow"]["items_per_s"] > 0
    assert set(report["groups"]["Source"]) >= {"busy_pct", "items_per_s"}
    assert report["queues"]["Numbers"]["nonempty_pct"] >= 50
    assert 0 <= report["queues"]["Numbers"]["full_pct"] <= report["queues"]["Numbers"]["nonempty_pct"]
    [hint] = report["hints"]
    assert re.fullmatch(
        r"Slow kept Numbers (full|non-empty) \d+% of the time, its instances busy \d+%: "
        r"raise its instances \(now 1\); about \d+ would keep up with Source's \d+ items/s",
        hint,
    ), hint
    log = result.stderr.split("MainThread main: run report:\n", 1)[1].splitlines()
    assert log[0].split() == [
        "group",
        "inst",
        "received",
        "done",
        "dead",
        "emitted",
        "stored",
        "failed",
        "busy%",
        "items/s",
    ]
    assert log[1].split()[:6] == ["Source", "1", "100", "100", "0", "100"]
    assert log[2].split()[:6] == ["Slow", "1", "100", "100", "0", "100"]
    assert log[3].split() == [
        "queue",
        "max",
        "put",
        "preloaded",
        "refused",
        "taken",
        "left",
        "high",
        "full%",
        "nonempty%",
    ]
    assert log[4].split()[:7] == ["Numbers", "10", "100", "0", "0", "100", "0"]
    assert log[5] == f"hint: {hint}"


# --- logging -------------------------------------------------------------------------------------------------


def test_log_file_names_the_thread_that_wrote_each_line(tmp_path):
    log_path = tmp_path / "run.log"
    with FakeSites(unknown={"AAPL"}) as sites:
        pipeline = local_pipeline(sites, tmp_path)
        result = run_main(
            [
                "--pipeline",
                str(pipeline),
                "--log-file",
                str(log_path),
                "--quiet",
                "--set",
                "workers.YahooFinanceWorker.params.requests_per_second=0",
            ],
            env={"DATA_DIR": str(tmp_path / "data")},
            timeout_s=TIMEOUT_S,
        )

    assert result.returncode == 1, result.stderr  # AAPL was dead-lettered
    log = log_path.read_text()
    assert re.search(
        r"^\S+ \S+ WARNING YahooFinanceWorker-[0-3] core\.run\.hand: YahooFinanceWorker-[0-3] failed on "
        r"'AAPL': ",
        log,
        re.MULTILINE,
    ), log
    assert re.search(
        r"^\S+ \S+ INFO    WikiWorker-0 workers\.wiki_worker: WikiWorker-0: 503 symbols from ", log, re.MULTILINE
    ), log
    assert " INFO    MainThread main: run report:\n" in log
    assert "\x1b" not in log
    # The same lines go to stderr.
    assert [text for text in log.splitlines() if LOG_LINE.match(text)] == [
        text for text in result.stderr.splitlines() if LOG_LINE.match(text)
    ]


FAIL_ODD = VALID.replace("class: Collect", "class: FailOdd").replace("    params:\n      key: cli-test\n", "")


def test_log_level_warning_hides_info(tmp_path):
    path = write(tmp_path, FAIL_ODD)

    result = main(["--pipeline", str(path), "--log-level", "WARNING", "--quiet"], tmp_path)

    assert result.returncode == 1, result.stderr  # 1 and 3 failed
    *warnings, summary = [text.split(" ", 2)[2] for text in result.stderr.splitlines()]
    assert warnings == [
        "WARNING Sink-0 core.run.hand: Sink-0 failed on 1: odd number 1",
        "WARNING Sink-0 core.run.hand: Sink-0 failed on 3: odd number 3",
    ]
    # A run that did not exit 0 logs its summary as an error, so a WARNING log still says how it ended.
    assert summary == f"ERROR   MainThread main: {result.stdout.strip()}"


def test_log_level_debug_shows_the_runner_at_work(tmp_path):
    path = write(tmp_path, FAIL_ODD)

    result = main(["--pipeline", str(path), "--log-level", "DEBUG", "--quiet"], tmp_path)

    assert result.returncode == 1, result.stderr
    assert " DEBUG   YamlPipelineExecutor core.run.ends: Numbers: every producer ended; sent 1 DONE\n" in result.stderr
    assert " INFO    MainThread main: run report:\n" in result.stderr
