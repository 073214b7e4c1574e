"""The fault table, docs/RELIABILITY.md: each fault test records what it measured, and a session run
with `--reliability-report PATH` writes the table from those records and the tests' outcomes.

A pytest plugin (tests/conftest.py loads it): the `reliability` fixture records a case's row, and every
collected test that asks for that fixture is a fault case of the table, whether it recorded a row or not:
one that failed, errored (in a fixture too) or was skipped says so, with the reason, and the header counts
every collected case.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
#: The local PostgreSQL of the tests (tests/conftest.py, pg_admin); its version goes in the table's header.
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REASON_CHARS = 200  # a reason in the table is the first line of the failure, cut to this

SECTIONS = ("HTTP", "Database", "Crash", "Signals", "Dead letters", "Cron", "Secrets", "Configuration")


@dataclass
class FaultResult:
    """One case: what was done, what should happen, and what the run did."""

    nodeid: str
    section: str
    case: str
    cause: str
    expected: str
    items: int  # items the run had to account for (symbols the source emitted, or its page)
    stored: int
    dead_lettered: int
    lost: int
    not_started: int
    duplicated: int
    seconds: float
    timing: str  # what `seconds` measures, e.g. "start to exit", "SIGTERM to exit"
    max_s: float
    exit_code: int | None
    expected_exit: int


@dataclass
class CaseOutcome:
    """How the test of one collected fault case ended."""

    nodeid: str
    outcome: str = "not run"  # passed, failed, error, skipped, xfailed (a known bug), XPASS, not run
    reason: str = ""  # why it did not pass (the first line), or the xfail reason

    def text(self) -> str:
        """The *Test* cell: the outcome, and why when it did not pass."""
        shown = self.reason and self.outcome not in ("passed", "xfailed")
        return f"{self.outcome}: {self.reason}" if shown else self.outcome


def render(
    cases: list[CaseOutcome], results: list[FaultResult], *, command: str, session_s: float, machine: dict[str, str]
) -> str:
    """The markdown page: what the table is, how it was made, on what, then one table per section (every
    collected case has a row: those that recorded none are listed in a section of their own)."""
    outcome = {case.nodeid: case for case in cases}
    counts = {
        kind: sum(1 for case in cases if case.outcome == kind)
        for kind in ("passed", "xfailed", "failed", "error", "skipped", "XPASS", "not run")
    }
    recorded = {r.nodeid for r in results}
    unrecorded = [case for case in cases if case.nodeid not in recorded]
    bugs = [case for case in cases if case.outcome == "xfailed"]
    lines = [
        "# Reliability: the fault table",
        "",
        "Issue 3 asks that a run always ends within a bounded time, accounts for every item, and says honestly",
        "in its exit code what happened. Each row below is one fault injected into a real run of",
        "`python main.py` (the shipped pipeline, pointed at local stand-ins): an HTTP server on 127.0.0.1",
        "scripted to misbehave (`tests/sites.py`), the local PostgreSQL, or a throwaway PostgreSQL cluster that",
        "the test starts with initdb/pg_ctl and then restarts or stops (`tests/pg_cluster.py`).",
        "",
        "Every row is measured, not claimed: *In* is the run's real input (the symbols the source emitted, or",
        "its one page when the run never got to the symbols); *stored* is counted in the database table,",
        "*dead-lettered* in the dead-letter file; *not run* counts input values a run that never started",
        "(configuration error, lock held) reported in its stats as not started; *lost* is the number of input",
        "items found in none of these, and *duplicated* the number found twice (stored twice, or both stored and",
        "dead-lettered). *Seconds* is wall-clock time measured by the test, with the bound the test enforces.",
        "Every PostgreSQL URL carried a random canary password, and each test asserts it appears nowhere in",
        "stdout, the log, the stats JSON or the dead-letter file. *Test* is the outcome of the test that made the",
        "row; besides the row's numbers, every test checks the stats that run wrote (each run writes them, however",
        "it ends): the exit code, the summary line, `lost = 0`, and per group `received = processed +",
        "dead_lettered`, nothing in flight, nothing left in a queue; and the case's own expectations (see",
        "`tests/test_faults.py`, `tests/test_faults_lifecycle.py` and, for a run whose queues are in Redis, over",
        "one or several processes, `tests/test_redis_faults.py`). A row whose",
        "test is *xfailed* is a known product bug: the expected behaviour is what the test demands, the",
        "measured columns are what the product does today (see the end of the page). A case whose test failed,",
        "errored or was skipped says so in *Test*, with the reason; one that ended before it could record its",
        'numbers still has a row, in "Cases without a measurement".',
        "",
        "Settings used unless a row says otherwise (injected into a copy of",
        "`pipelines/wiki_yahoo_scraper_pipeline.yaml`): YahooFinanceWorker ×4 with `requests_per_second: 0,",
        "retries: 2, backoff_s: 0.05, connect_timeout_s: 1, read_timeout_s: 1, retry_after_max_s: 2,",
        "breaker_failures: 5, breaker_cooldown_s: 60`; PostgresWorker with `batch_size: 20, flush_interval_s: 0.2,",
        "write_retries: 3, retry_backoff_s: 0.2, retry_backoff_max_s: 1`; queues `maxsize: 1000`. The source",
        "page is the saved Wikipedia page with 503 symbols.",
        "",
        "Produced by:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Generated {machine['date']} on {machine['platform']}, {machine['cpus']} CPU(s) (`nproc`), "
        f"Python {machine['python']}, {machine['postgres']}. {len(cases)} cases: {counts['passed']} passed, "
        f"{counts['xfailed']} known bugs (xfailed), {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped"
        + "".join(f", {counts[kind]} {kind}" for kind in ("XPASS", "not run") if counts[kind])
        + f"; {len(results) + len(unrecorded)} rows; the session took {session_s:.0f} s.",
    ]
    if unrecorded:
        lines += [
            "",
            "## Cases without a measurement",
            "",
            "Their tests ended before recording a row (a fixture failed, the test was skipped, or it failed "
            "before its run was counted).",
            "",
            "| Case | Test |",
            "|---|---|",
        ]
        lines += [f"| `{_cell(case.nodeid)}` | {_cell(case.text())} |" for case in unrecorded]
    for section in SECTIONS + tuple(sorted({r.section for r in results} - set(SECTIONS))):
        rows = [r for r in results if r.section == section]
        if not rows:
            continue
        lines += [
            "",
            f"## {section}",
            "",
            "| Case | How it is caused | Expected behaviour | In | Stored | Dead-lettered | Not run | Lost "
            "| Duplicated | Seconds (bound) | Exit (expected) | Test |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|---|---|---|",
        ]
        for r in rows:
            exit_text = "killed at the bound" if r.exit_code is None else str(r.exit_code)
            seconds = f"{r.seconds:.2f}" if r.seconds < 1 else f"{r.seconds:.1f}"
            lines.append(
                f"| {_cell(r.case)}<br>`{_cell(_test_name(r.nodeid))}` | {_cell(r.cause)} | {_cell(r.expected)} "
                f"| {r.items} | {r.stored} | {r.dead_lettered} | {r.not_started} | {r.lost} | {r.duplicated} "
                f"| {seconds} {_cell(r.timing)} (< {r.max_s:g}) | {exit_text} ({r.expected_exit}) "
                f"| {_cell(outcome.get(r.nodeid, CaseOutcome(r.nodeid)).text())} |"
            )
    if bugs:
        names = {r.nodeid: r.case for r in results}
        lines += [
            "",
            "## Known bugs",
            "",
            "Each is a failing test marked `xfail(strict=True)`; it passes, and the marker comes off, once "
            "the product is fixed.",
            "",
        ]
        lines += [
            f"- **{_cell(names.get(case.nodeid, _test_name(case.nodeid)))}** (`{_test_name(case.nodeid)}`): "
            f"{_cell(case.reason)}"
            for case in bugs
        ]
    lines.append("")
    return "\n".join(lines)


def _test_name(nodeid: str) -> str:
    return nodeid.split("::")[-1]


def machine_facts(admin_url: str, pg_binaries_version: str) -> dict[str, str]:
    """Date, platform, CPUs, Python and PostgreSQL versions of the machine the table was made on."""
    try:
        engine = sa.create_engine(admin_url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                local = "PostgreSQL " + conn.execute(sa.text("SHOW server_version")).scalar()
        finally:
            engine.dispose()
    except sa.exc.SQLAlchemyError:
        local = "no local PostgreSQL"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(terse=True),
        "cpus": _nproc(),
        "python": platform.python_version(),
        "postgres": f"{local} (local server) and throwaway clusters from {pg_binaries_version}",
    }


def command_line(root: Path, args: tuple[str, ...] | list[str]) -> str:
    """The command that ran this session, as typed in the project folder."""
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(root))
    except ValueError:
        shown = str(python)
    return f"{shown} -m pytest {shlex.join(args)}".rstrip()


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(len(os.sched_getaffinity(0)))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- the plugin: `pytest --reliability-report docs/RELIABILITY.md` ----------------------------------

_CASES = pytest.StashKey[list]()
_RESULTS = pytest.StashKey[list]()
_OUTCOMES = pytest.StashKey[dict]()
_STARTED = pytest.StashKey[float]()
FIXTURE = "reliability"  # a test that asks for it is a fault case of the table


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        metavar="PATH",
        default=None,
        help="write the fault table (markdown) from the results the fault tests measured",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The reliability table is gathered in one process: a run that writes it does not spread over workers."""
    if config.getoption("--reliability-report") and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_CASES] = []
    config.stash[_RESULTS] = []
    config.stash[_OUTCOMES] = {}
    config.stash[_STARTED] = time.monotonic()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_CASES] = [
        item.nodeid for item in session.items if FIXTURE in getattr(item, "fixturenames", ())
    ]


@pytest.fixture(name=FIXTURE)
def reliability_fixture(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record this test's measured fault case (fields of FaultResult) for the table."""

    def record(**fields: Any) -> None:
        request.config.stash[_RESULTS].append(FaultResult(nodeid=request.node.nodeid, **fields))

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    outcomes = item.config.stash[_OUTCOMES]
    so_far = outcomes.get(item.nodeid)
    # The first phase that did not pass tells the outcome; a teardown failing after a pass is an error.
    if (
        (report.when == "setup" and not report.passed)
        or report.when == "call"
        or (report.when == "teardown" and report.failed and so_far in (None, "passed", "xfailed", "XPASS"))
    ):
        outcomes[item.nodeid] = outcome_of(report)
    return report


def outcome_of(report: pytest.TestReport) -> tuple[str, str]:
    """(outcome, reason) of one phase's report."""
    if hasattr(report, "wasxfail"):
        return ("xfailed" if report.skipped else "XPASS"), report.wasxfail
    if report.passed:
        return "passed", ""
    if report.skipped:
        return "skipped", reason_of(report)
    kind = "failed" if report.when == "call" else "error"
    return kind, ("in teardown: " if report.when == "teardown" else "") + reason_of(report)


def reason_of(report: pytest.TestReport) -> str:
    """The first line of why a phase failed or was skipped."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: why")
        text = longrepr[2].removeprefix("Skipped: ")
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(longrepr)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= REASON_CHARS else first[: REASON_CHARS - 3] + "..."


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--reliability-report")
    if not path:
        return
    from pg_cluster import server_version  # only the report needs it

    outcomes = session.config.stash[_OUTCOMES]
    cases = [CaseOutcome(nodeid, *outcomes.get(nodeid, ("not run", ""))) for nodeid in session.config.stash[_CASES]]
    text = render(
        cases,
        session.config.stash[_RESULTS],
        command=command_line(ROOT, session.config.invocation_params.args),
        session_s=time.monotonic() - session.config.stash[_STARTED],
        machine=machine_facts(PG_ADMIN_URL, server_version()),
    )
    target = Path(path) if Path(path).is_absolute() else session.config.invocation_params.dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
