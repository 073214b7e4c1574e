"""Running main.py against injected faults and checking its books: the helpers of tests/test_faults.py.

A fault test writes a copy of the shipped pipeline with fast settings (`fault_pipeline`), runs main.py
as a subprocess (`MainRun`, `run`), and hands the outcome to `finish`, which records the measured
result for the fault table and asserts what every case must hold: the exit code, the time bound,
every input item stored or dead-lettered exactly once, the stats adding up, and no password anywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import sqlalchemy as sa
import yaml
from sites import SP500_PAGE, FakeSites

from conftest import ROOT, local_pipeline
from workers.wiki_worker import parse_constituents
from workers.yahoo_pages import yahoo_symbol

SYMBOLS = parse_constituents(SP500_PAGE.read_bytes())
CANARY = f"canary-{uuid.uuid4().hex[:16]}"
CHART, QUOTE = "/v8/finance/chart/", "/quote/"
YAHOO_INSTANCES = 4  # as shipped
# Fast but realistic settings for the copy of the shipped pipeline (the table's header repeats them).
YAHOO = {
    "requests_per_second": 0,
    "retries": 2,
    "backoff_s": 0.05,
    "connect_timeout_s": 1,
    "read_timeout_s": 1,
    "retry_after_max_s": 2,
    "breaker_failures": 5,
    "breaker_cooldown_s": 60,
}
SINK = {"batch_size": 20, "flush_interval_s": 0.2, "write_retries": 3, "retry_backoff_s": 0.2, "retry_backoff_max_s": 1}
MAIN_TIMEOUT_S = 90  # a run still going after this is killed and its test fails
POLL_S = 0.05
# The pipeline's database sessions carry this name (core/storage/postgres.py), so a test can find and kill them.
APPLICATION_NAME = "yaml-pipeline"
CLEARED_ENV = ("POSTGRES_", "DATABASE_URL", "PIPELINE_LOCATION", "DEAD_LETTER_PATH", "DATA_DIR", "PYTHONPATH")
# The sink's warning when a batch failed on a lost connection and is written again (workers/base.py).
RETRIED_BATCH = re.compile(r"writing \d+ item\(s\) failed \((OperationalError|InterfaceError)\); retry 1/")


# --- cases and their accounting ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row of the fault table: what is done, what must happen, and the bounds the test enforces."""

    section: str
    case: str
    cause: str
    expected: str
    exit_code: int
    max_s: float
    timing: str = "start to exit"
    stats: bool = True  # the run must write --stats-json and its accounting must add up


@dataclass
class Outcome:
    """What one run of main.py left behind."""

    returncode: int | None  # None: it did not end in time and was killed
    seconds: float
    stdout: str = field(repr=False)
    log: str = field(repr=False)
    stats_text: str = field(repr=False)
    letters_text: str = field(repr=False)
    rows: list[dict[str, Any]] = field(repr=False)

    @property
    def stats(self) -> dict | None:
        """The --stats-json document, if the run wrote one."""
        return json.loads(self.stats_text) if self.stats_text else None

    @property
    def letters(self) -> list[dict]:
        """The dead-letter records."""
        return [json.loads(line) for line in self.letters_text.splitlines()]

    @property
    def stored(self) -> list[str]:
        """The symbol of every row in the table, duplicates included."""
        return [row["symbol"] for row in self.rows]

    def row(self, symbol: str) -> dict[str, Any]:
        """The stored row of `symbol`."""
        return next(row for row in self.rows if row["symbol"] == symbol)


@dataclass
class Ledger:
    """Input items against what was stored, dead-lettered, and (for a run that never ran) reported as
    never started, as multisets."""

    items: int
    stored: int
    dead_lettered: int
    lost: list[Any] = field(default_factory=list)
    duplicated: list[Any] = field(default_factory=list)
    not_started: int = 0


def symbol_of(letter: dict) -> Any:
    """A Yahoo dead letter holds the symbol, a sink dead letter the whole record."""
    item = letter["item"]
    return item["symbol"] if isinstance(item, dict) else item


def count(out: Outcome, expected: list[Any]) -> Ledger:
    """Compare the input items with the table and the dead letters. A run that never ran (config error,
    lock held) stores and dead-letters nothing: its stats must report every input value as not started."""
    stored = Counter(out.stored)
    dead = Counter(symbol_of(letter) for letter in out.letters)
    seen, wanted = stored + dead, Counter(expected)
    lost = sorted((wanted - seen).elements())
    stats = out.stats
    not_started = 0
    if stats and not stats["groups"] and lost and stats["not_started"] == len(lost):
        not_started, lost = len(lost), []
    return Ledger(
        items=len(expected),
        stored=sum(stored.values()),
        dead_lettered=sum(dead.values()),
        lost=lost,
        duplicated=sorted((seen - wanted).elements()),
        not_started=not_started,
    )


def listed_inputs(pipeline: Path) -> list[Any]:
    """The input values a pipeline file lists (every worker's `input_values`), as the file says."""
    spec = yaml.safe_load(pipeline.read_text())
    return [value for worker in spec["workers"] for value in worker.get("input_values") or []]


def record_row(record: Callable[..., None], case: Case, book: Ledger, seconds: float, exit_code: int | None) -> None:
    """The case's row of the fault table (docs/RELIABILITY.md), from its books."""
    record(
        section=case.section,
        case=case.case,
        cause=case.cause,
        expected=case.expected,
        items=book.items,
        stored=book.stored,
        dead_lettered=book.dead_lettered,
        not_started=book.not_started,
        lost=len(book.lost),
        duplicated=len(book.duplicated),
        seconds=seconds,
        timing=case.timing,
        max_s=case.max_s,
        exit_code=exit_code,
        expected_exit=case.exit_code,
    )


def finish(
    record: Callable[..., None], case: Case, out: Outcome, expected: list[Any], *, seconds: float | None = None
) -> Ledger:
    """Record the case's measured result, then assert what every case must hold."""
    book = count(out, expected)
    seconds = out.seconds if seconds is None else seconds
    record_row(record, case, book, seconds, out.returncode)

    assert out.returncode == case.exit_code, f"exit {out.returncode}, expected {case.exit_code}\n{tail(out.log)}"
    assert seconds < case.max_s, f"took {seconds:.1f}s, bound {case.max_s}s"
    assert not book.lost, f"lost: {book.lost[:20]}"
    assert not book.duplicated, f"stored twice or stored and dead-lettered: {book.duplicated[:20]}"
    for name, text in (
        ("stdout", out.stdout),
        ("log", out.log),
        ("stats", out.stats_text),
        ("dead letters", out.letters_text),
    ):
        assert CANARY not in text, f"the database password appears in the {name}"
    if case.stats:
        stats = out.stats
        assert stats is not None, f"no stats written\n{tail(out.log)}"
        assert stats["lost"] == 0, stats
        assert stats["exit_code"] == out.returncode, stats
        assert out.stdout.strip().splitlines()[-1].endswith(f"exit {out.returncode}"), "no summary on stdout"
        for name, group in stats["groups"].items():
            assert group["received"] == group["processed"] + group["dead_lettered"], (name, group)
            assert group["in_flight"] == 0, (name, group)
        for name, queue in stats["queues"].items():
            assert queue["left"] == 0, (name, queue)
        assert stats["dead_letters"] == len(out.letters)
        if "PostgresWorker" in stats["groups"]:
            assert stats["groups"]["PostgresWorker"]["stored"] == len(out.rows)
    return book


def tail(text: str, chars: int = 4000) -> str:
    """The end of a log, for an assertion message."""
    return text[-chars:]


def pick(*indices: int) -> list[str]:
    """Symbols at (or just after) these positions of the page that need no URL escaping."""
    chosen = []
    for index in indices:
        chosen.append(next(s for s in SYMBOLS[index:] if s.isalpha() and s not in chosen))
    return chosen


def chart_path(symbol: str) -> str:
    """The fake Yahoo's chart path for a symbol as Wikipedia writes it."""
    return CHART + yahoo_symbol(symbol)


def quote_path(symbol: str) -> str:
    """The fake Yahoo's quote-page path for a symbol as Wikipedia writes it."""
    return QUOTE + yahoo_symbol(symbol)


def with_password(url: str, password: str) -> str:
    """`url` with `password` in it."""
    return sa.make_url(url).set(password=password).render_as_string(hide_password=False)


# --- running main.py ------------------------------------------------------------------------------


def fault_pipeline(
    sites: FakeSites,
    folder: Path,
    *,
    yahoo: dict | None = None,
    sink: dict | None = None,
    maxsize: int | None = None,
    classes: dict[str, tuple[str, str]] | None = None,
) -> Path:
    """The shipped pipeline pointed at `sites`, with the fast settings plus `yahoo` / `sink` params,
    every queue's maxsize set to `maxsize`, and `classes` ({group: (location, class)}) swapped in."""
    folder.mkdir(parents=True, exist_ok=True)
    path = local_pipeline(sites, folder)
    spec = yaml.safe_load(path.read_text())
    groups = {worker["name"]: worker for worker in spec["workers"]}
    groups["YahooFinanceWorker"]["params"].update({**YAHOO, **(yahoo or {})})
    groups["PostgresWorker"]["params"].update({**SINK, **(sink or {})})
    for name, (location, class_name) in (classes or {}).items():
        groups[name].update({"location": location, "class": class_name})
    if maxsize is not None:
        for queue in spec["queues"]:
            queue["maxsize"] = maxsize
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class MainRun:
    """`python main.py` as a subprocess; its output goes to files, so a full pipe can never block it."""

    def __init__(
        self,
        folder: Path,
        pipeline: Path,
        *,
        database_url: str | None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.stats_path, self.letters_path = folder / "stats.json", folder / "dead_letters.jsonl"
        self.stdout_path, self.stderr_path = folder / "stdout.txt", folder / "stderr.txt"
        environment = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_ENV)}
        environment.update(ENV_FILE=os.devnull, DATA_DIR=str(folder / "data"), DEAD_LETTER_PATH=str(self.letters_path))
        if database_url:
            environment["DATABASE_URL"] = database_url
        environment.update(env or {})
        command = [
            sys.executable,
            str(ROOT / "main.py"),
            "--pipeline",
            str(pipeline),
            "--stats-json",
            str(self.stats_path),
            *args,
        ]
        with self.stdout_path.open("w") as stdout, self.stderr_path.open("w") as stderr:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
            )
        self.ended: float | None = None
        self.code: int | None = None

    def __enter__(self) -> MainRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()

    def alive(self) -> bool:
        """True while main runs."""
        return self.proc.poll() is None

    def signal(self, signum: int) -> float:
        """Send `signum`; the moment it was sent."""
        self.proc.send_signal(signum)
        return time.monotonic()

    def wait(self, timeout_s: float = MAIN_TIMEOUT_S) -> int | None:
        """The exit code, or None after killing a run that did not end within `timeout_s`."""
        try:
            self.code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self.ended = time.monotonic()
        return self.code

    def kill(self) -> None:
        """SIGKILL main if it still runs (the finalizer of every run)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        """Everything main wrote to stderr so far."""
        return self.stderr_path.read_text()

    def dead_letter_count(self) -> int:
        """Complete lines in the dead-letter file so far."""
        if not self.letters_path.exists():
            return 0
        return self.letters_path.read_text().count("\n")

    def outcome(self, database_url: str | None) -> Outcome:
        """What the ended run left: output, stats, dead letters, and the table at `database_url`."""
        assert self.ended is not None, "wait() first"
        return Outcome(
            returncode=self.code,
            seconds=self.ended - self.started,
            stdout=self.stdout_path.read_text(),
            log=self.log(),
            stats_text=self.stats_path.read_text() if self.stats_path.exists() else "",
            letters_text=self.letters_path.read_text() if self.letters_path.exists() else "",
            rows=read_rows(database_url) if database_url else [],
        )


def run(
    sites: FakeSites,
    folder: Path,
    database_url: str | None,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    read_back: bool = True,
    timeout_s: float = MAIN_TIMEOUT_S,
    **pipeline: Any,
) -> Outcome:
    """Run main on the fault pipeline to its end (or `timeout_s`); read the table back if `read_back`."""
    with MainRun(
        folder, fault_pipeline(sites, folder, **pipeline), database_url=database_url, env=env, args=args
    ) as main:
        main.wait(timeout_s)
    return main.outcome(database_url if read_back else None)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, main: MainRun | None = None) -> Any:
    """Poll `condition` until it is true; fail after `timeout_s`, or at once if main ended meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if main is not None and not main.alive():
            raise AssertionError(f"main ended ({main.proc.returncode}) before {what}\n{tail(main.log())}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout_s}s")
        time.sleep(POLL_S)


# --- the database side ----------------------------------------------------------------------------


def pg_connect(url: str, *, autocommit: bool = True):
    """A plain psycopg2 connection (the test's own sessions, never named like the pipeline's)."""
    parts = sa.make_url(url)
    conn = psycopg2.connect(
        host=parts.host,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname=parts.database,
        connect_timeout=5,
        application_name="fault-test",
    )
    conn.autocommit = autocommit
    return conn


def read_rows(url: str) -> list[dict[str, Any]]:
    """Every row of `prices` (none if the table was never created)."""
    conn = pg_connect(url)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
            cursor.execute("SELECT to_regclass('prices') IS NOT NULL AS present")
            if not cursor.fetchone()["present"]:
                return []
            cursor.execute("SELECT symbol, price, currency FROM prices ORDER BY id")
            return [dict(row) for row in cursor.fetchall()]
    finally:
        conn.close()


def row_count(url: str) -> int:
    """Rows in `prices` now (0 before the table exists)."""
    conn = pg_connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT to_regclass('prices') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return 0
            cursor.execute("SELECT count(*) FROM prices")
            return cursor.fetchone()[0]
    finally:
        conn.close()


def blocked_writers(url: str) -> list[int]:
    """Pids of the pipeline's sessions on this database that wait for a lock."""
    conn = pg_connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                "AND datname = current_database() AND wait_event_type = 'Lock'",
                (APPLICATION_NAME,),
            )
            return [pid for (pid,) in cursor.fetchall()]
    finally:
        conn.close()


@contextmanager
def table_locked(url: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on `prices`, so the pipeline's next write waits in mid-transaction
    (where a restart or a kill then hits a batch in flight, not an idle pooled connection)."""
    conn = pg_connect(url, autocommit=False)
    try:
        with conn.cursor() as cursor:
            cursor.execute("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.close()  # ends the transaction and the lock, if a restart did not already


def terminate(url: str, pid: int) -> bool:
    """pg_terminate_backend(pid): True if the session was there to kill."""
    conn = pg_connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            return bool(cursor.fetchone()[0])
    finally:
        conn.close()


def kill_a_batch_in_flight(url: str, main: MainRun, *, rows_first: int = 40) -> int:
    """Once `rows_first` rows are stored, catch the pipeline's next batch mid-INSERT and terminate its session."""
    wait_until(lambda: row_count(url) >= rows_first, 30, f"{rows_first} rows stored", main)
    with table_locked(url):
        pid = wait_until(lambda: blocked_writers(url), 30, "a blocked write", main)[0]
        assert terminate(url, pid)
    return pid
