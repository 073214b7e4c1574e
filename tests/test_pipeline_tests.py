"""`python main.py --test` (core/app/pipeline_tests/): the shipped pipeline's tests pass; a failing expectation shows
a diff of expected and got; a broken test file names its lines and exits 2; --fix-tests writes what a test got into
the file, its comments and order kept; --junit-xml writes what CI systems read; a stage runs in the mode the
pipeline declares; a request with no answer fails its test with the URL; no test opens a socket off this machine."""

from __future__ import annotations

import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest
from test_demo import local

from conftest import ROOT, run_main

WORKERS = """\
from workers.base import Worker
from workers.http_worker import HttpWorker


class Numbers(Worker):
    def process(self, item):
        return item


class Convert(Worker):
    def process(self, item):
        return item * 9 / 5 + 32


class AsyncConvert(Worker):
    async def process(self, item):
        return item * 9 / 5 + 32


class Fetch(HttpWorker):
    def process(self, item):
        return self.http.get(f"https://example.org/{item}").text


class Drop(Worker):
    def process(self, item):
        return None
"""

PIPELINE = """\
queues:
  - {{name: Celsius}}
  - {{name: Fahrenheit}}
  - {{name: Pages}}
workers:
  - {{name: Source, location: temps, class: Numbers, input_values: [1, 2], output_queues: [Celsius]}}
  - {{name: Convert, location: temps, class: {cls}, {extra}input_queue: Celsius, output_queues: [Fahrenheit]}}
  - {{name: Sink, location: temps, class: Drop, input_queue: Fahrenheit}}
  - {{name: Fetch, location: temps, class: Fetch, input_values: [a], output_queues: [Pages]}}
  - {{name: Pages, location: temps, class: Drop, input_queue: Pages}}
"""

TESTS = """\
tests:
  # the contract's smallest test
  - name: converts boiling and freezing
    group: Convert
    inputs: [0, 100]
    expect:
      outputs: [32.0, 212.0]

  # a wrong expectation, on purpose
  - name: converts body temperature
    group: Convert
    inputs: [0, 100, 37]
    expect:
      outputs: [32.0, 211.0, 98.6]   # 212 really
      in_order: false
"""

MODES = {
    "threads": ("Convert", ""),
    "asyncio": ("AsyncConvert", ""),
    "processes": ("Convert", "processes: 2, "),
    "asyncio-in-processes": ("AsyncConvert", "processes: 2, "),
}


def project(folder: Path, tests: str = TESTS, mode: str = "threads") -> Path:
    """A user's project: workers, a pipeline with a Pages queue, and its tests beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "temps.py").write_text(WORKERS)
    cls, extra = MODES[mode]
    pipeline = folder / "temps.yaml"
    pipeline.write_text(PIPELINE.format(cls=cls, extra=extra))
    (folder / "temps.tests.yaml").write_text(tests)
    return pipeline


def main(args: list[str], tmp_path: Path, log: Path | None = None):
    env = {"DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    if log is not None:
        env |= {"PYTHONPATH": f"{ROOT / 'tests' / 'connect_log'}:{ROOT}", "CONNECT_LOG": str(log)}
    return run_main(args, env=env, cwd=tmp_path)


def test_the_shipped_pipelines_tests_pass_and_open_no_socket_off_this_machine(tmp_path: Path) -> None:
    log = tmp_path / "connect.log"
    done = main(["--pipeline", str(ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"), "--test"], tmp_path, log)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "8 passed, 0 failed", done.stdout
    assert done.stdout.count("\npassed  ") == 8
    lines = log.read_text().splitlines() if log.exists() else []
    assert [line for line in lines if not local(line)] == []


def test_a_failing_expectation_shows_expected_and_got(tmp_path: Path) -> None:
    pipeline = project(tmp_path / "p")
    done = main(["--pipeline", str(pipeline), "--test"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "passed  converts boiling and freezing  (stage Convert" in out
    assert "FAILED  converts body temperature  (stage Convert" in out
    assert "outputs differ (3 expected in any order, 3 got; - expected, + got):" in out
    assert "-211.0" in out and "+212.0" in out and "-98.6" not in out  # only what differs is marked
    assert out.splitlines()[-1] == "1 passed, 1 failed"


def test_one_test_by_name(tmp_path: Path) -> None:
    pipeline = project(tmp_path / "p")
    done = main(["--pipeline", str(pipeline), "--test", "converts boiling and freezing"], tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "1 passed, 0 failed", done.stdout
    done = main(["--pipeline", str(pipeline), "--test", "converts boiling"], tmp_path)
    assert done.returncode == 2 and "no such test; did you mean 'converts boiling and freezing'?" in done.stderr


BROKEN = """\
tests:
  - name: typo in group
    group: Convrt
    inputs: [1]
    expect: {outputs: [33.8]}
  - name: unknown keys
    group: Convert
    inptus: [1]
    expect: {outputz: [1], each: {value: {type: nubmer}}}
  - group: Convert
    inputs: [1]
    expect: {count: one}
"""


def test_a_broken_test_file_names_each_line_and_exits_2(tmp_path: Path) -> None:
    pipeline = project(tmp_path / "p", tests=BROKEN)
    done = main(["--pipeline", str(pipeline), "--test"], tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    tests = tmp_path / "p" / "temps.tests.yaml"
    for line in (
        f"{tests}:3: tests[0].group: no such worker group; did you mean 'Convert'?",
        f"{tests}:8: tests[1].inptus: unknown key; did you mean 'inputs'?",
        f"{tests}:9: tests[1].expect.outputz: unknown key; did you mean 'outputs'?",
        f"{tests}:9: tests[1].expect.each.value.type: not a type; did you mean 'number'?",
        f"{tests}:10: tests[2].name: missing: every test has a name",
        f"{tests}:12: tests[2].expect.count: must be an integer, got a string",
    ):
        assert line in done.stderr, done.stderr
    assert "passed" not in done.stdout


def test_fix_tests_writes_what_was_got_keeping_the_comments(tmp_path: Path) -> None:
    pipeline = project(tmp_path / "p")
    done = main(["--pipeline", str(pipeline), "--fix-tests"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # the run it fixed from had a failure
    written = (tmp_path / "p" / "temps.tests.yaml").read_text()
    assert written == TESTS.replace("[32.0, 211.0, 98.6]", "[32.0, 212.0, 98.6]"), written
    done = main(["--pipeline", str(pipeline), "--test"], tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "2 passed, 0 failed", done.stdout


def test_junit_xml_says_what_passed_and_what_failed(tmp_path: Path) -> None:
    pipeline = project(tmp_path / "p")
    report = tmp_path / "junit" / "temps.xml"
    done = main(["--pipeline", str(pipeline), "--test", "--junit-xml", str(report)], tmp_path)
    assert done.returncode == 1
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"converts boiling and freezing", "converts body temperature"}
    assert cases["converts boiling and freezing"].find("failure") is None
    failure = cases["converts body temperature"].find("failure")
    assert failure is not None and "+212.0" in (failure.text or "")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_stage_runs_in_the_mode_the_pipeline_declares(tmp_path: Path, mode: str) -> None:
    tests = textwrap.dedent("""\
        tests:
          - name: converts
            group: Convert
            inputs: [0, 100, 37, -40]
            expect:
              outputs: [32.0, 212.0, 98.6, -40.0]
        """)
    pipeline = project(tmp_path / "p", tests=tests, mode=mode)
    done = main(["--pipeline", str(pipeline), "--test"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "1 passed, 0 failed"


def test_a_request_with_no_answer_fails_its_test_with_the_url(tmp_path: Path) -> None:
    tests = textwrap.dedent("""\
        tests:
          - name: fetches a page
            group: Fetch
            inputs: [a, b]
            responses:
              - {url: "https://example.org/a", body: page a}
            expect:
              outputs: [page a, page b]
        """)
    pipeline = project(tmp_path / "p", tests=tests)
    done = main(["--pipeline", str(pipeline), "--test"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "-page b" in done.stdout
    assert "not recorded: GET https://example.org/b" in done.stdout


LOCKY = """\
import threading

from workers.base import Worker


class Numbers(Worker):
    def process(self, item):
        return item


class Locky(Worker):
    def process(self, item):
        return {"n": item, "lock": threading.Lock()}  # fine in a thread; no process can send it


class Drop(Worker):
    def process(self, item):
        return None
"""


@pytest.mark.parametrize(("extra", "passes"), [("", True), ("processes: 1, ", False)], ids=["threads", "processes"])
def test_an_output_a_process_cannot_send_fails_its_test_as_it_fails_the_run(
    tmp_path: Path, extra: str, passes: bool
) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "locky.py").write_text(LOCKY)
    (folder / "l.yaml").write_text(
        "queues:\n  - {name: A}\n  - {name: B}\nworkers:\n"
        "  - {name: Source, location: locky, class: Numbers, input_values: [1], output_queues: [A]}\n"
        f"  - {{name: Locky, location: locky, class: Locky, {extra}input_queue: A, output_queues: [B]}}\n"
        "  - {name: Sink, location: locky, class: Drop, input_queue: B}\n"
    )
    (folder / "l.tests.yaml").write_text(
        "tests:\n  - name: sends it on\n    group: Locky\n    inputs: [1]\n    expect:\n      count: 1\n"
    )
    done = main(["--pipeline", str(folder / "l.yaml"), "--test"], tmp_path)
    assert done.returncode == (0 if passes else 1), done.stdout + done.stderr
    if not passes:
        assert "its output cannot be sent out of the worker process" in done.stdout
