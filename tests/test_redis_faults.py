"""Faults of a run spread over several processes ("machines") through Redis (issue 10, item 6).

Each test starts its own redis-server (tests/redis_server.py: a free port, a folder of its own, AOF on), the
fake Wikipedia and Yahoo (tests/sites.py) and a fresh PostgreSQL database, then runs `python main.py` as
several processes with the same `--run-id`, each with its own DATA_DIR and dead-letter file, each running
its share of the groups (`--only`), with SymbolQueue and PostgresUploading in Redis. It injects the fault
(a process or the server killed, restarted, flushed or cut off) and checks the run's books against its
input: every symbol the page lists is stored once or dead-lettered once over all the machines' dead-letter
files, none lost, none twice; each process exits as expected within a bound, the stats of each add up, and
the passwords (the database's canary, and Redis's when it has one) appear nowhere. Where the run ends with
Redis gone or emptied, what Redis still held counts too, as *not run*: read back from the server's AOF after
the run (Redis down for good), or read in the same transaction as the FLUSHALL (keys vanishing). Where the
run goes to its end, the reporting machine's ledger must show each Redis queue drained and given exactly one
entry per symbol, so that a record emitted twice is caught even though the sink's unique key would hide it.

The partition test runs one machine in a network namespace (tests/netns.py) with two veth links to the
host: Redis listens on the host side of one (and on 127.0.0.1 for the other machines), the fake sites on
the host side of the other, and that machine runs only YahooFinanceWorker, so it needs neither PostgreSQL
nor Wikipedia. Pulling the first link's cable cuts it off from Redis alone.

Each records its row for the fault table (section "Redis"):

    .venv/bin/python -m pytest tests/test_redis_faults.py --reliability-report docs/RELIABILITY.md
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fault_harness import (
    CANARY,
    CHART,
    CLEARED_ENV,
    SYMBOLS,
    Case,
    Ledger,
    MainRun,
    Outcome,
    count,
    fault_pipeline,
    finish,
    read_rows,
    record_row,
    symbol_of,
    tail,
    wait_until,
    with_password,
)
from fault_harness import run as run_solo
from netns import Namespace
from pg_cluster import free_port
from redis_server import RedisServer
from sites import WIKI_PATH, FakeSites, Fault

from conftest import ROOT, run_main

SECTION = "Redis"
REDIS_QUEUES = ("--set", "queues.SymbolQueue.backend=redis", "--set", "queues.PostgresUploading.backend=redis")
REDIS_PASSWORD = f"redis-pw-{uuid.uuid4().hex[:12]}"
MACHINE_TIMEOUT_S = 60  # a machine still running this long after the test is done waiting is killed


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def db(pg_url: str) -> str:
    """A fresh database on the local PostgreSQL; the URL carries the canary password (trust auth takes any)."""
    return with_password(pg_url, CANARY)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, AOF on; stopped and its folder removed afterwards."""
    with RedisServer() as server:
        yield server


# --- machines ------------------------------------------------------------------------------------


class Run:
    """The processes of one run (same pipeline file, same --run-id), each a "machine" with its own folder,
    DATA_DIR and dead-letter file; every one is killed at the end of the test if it still runs."""

    def __init__(
        self,
        folder: Path,
        sites: FakeSites,
        db: str,
        redis_url: str,
        *,
        queue_sets: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        **pipeline: Any,
    ) -> None:
        self.folder = folder
        self.pipeline = fault_pipeline(sites, folder / "pipeline", **pipeline)
        self.db = db
        self.run_id = f"test-{uuid.uuid4().hex[:8]}"
        self.env = {"REDIS_URL": redis_url, **(env or {})}
        self.args = REDIS_QUEUES + tuple(arg for key in queue_sets for arg in ("--set", key))
        self.machines: dict[str, MainRun] = {}

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        for machine in self.machines.values():
            machine.kill()

    def start(
        self, name: str, only: str | None, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> MainRun:
        """Start machine `name` running the groups `only` (comma-separated) in this run; with None, every
        group, in a run of its own (no --run-id)."""
        joining = ("--run-id", self.run_id, "--only", only) if only else ()
        machine = MainRun(
            self.folder / name,
            self.pipeline,
            database_url=self.db,
            env={**self.env, **(env or {})},
            args=(*joining, "--quiet", *self.args, *args),
        )
        self.machines[name] = machine
        return machine

    def wait(self, timeout_s: float = MACHINE_TIMEOUT_S) -> dict[str, int | None]:
        """Wait for every machine still running (killing any that outlives `timeout_s`); their exit codes."""
        deadline = time.monotonic() + timeout_s
        for machine in self.machines.values():
            if machine.ended is None:
                machine.wait(max(deadline - time.monotonic(), 0.1))
        return {name: machine.code for name, machine in self.machines.items()}

    def outcome(self, reporter: str) -> Outcome:
        """Every machine's output, logs and dead letters together, with the table; the exit code and stats
        are those of `reporter` (the machine running the sink, which reports the whole run)."""
        outs = {name: machine.outcome(None) for name, machine in self.machines.items()}
        started = min(machine.started for machine in self.machines.values())
        ended = max(machine.ended for machine in self.machines.values())
        return Outcome(
            returncode=outs[reporter].returncode,
            seconds=ended - started,
            stdout="".join(out.stdout for out in outs.values()),
            log="".join(f"===== {name}\n{out.log}" for name, out in outs.items()),
            stats_text=outs[reporter].stats_text,
            letters_text="".join(out.letters_text for out in outs.values()),
            rows=read_rows(self.db),
        )


def finish_run(
    record: Any,
    case: Case,
    run: Run,
    expected: list[Any],
    *,
    reporter: str = "A",
    exits: dict[str, int | None] | None = None,
    secrets: tuple[str, ...] = (),
    seconds: float | None = None,
    book_of: Callable[[Outcome, list[Any]], Ledger] = count,
) -> tuple[Outcome, Ledger]:
    """Record the case's row, then assert what every multi-machine case must hold: each machine's exit code
    (`exits`, by default the case's for every machine), the time bound, the table and every machine's dead
    letters against `expected` (none lost, none twice: `book_of` does the books), no secret in any output,
    and the stats of every machine that wrote them adding up (nothing in flight, nothing left in a queue it
    fetched from)."""
    out = run.outcome(reporter)
    book = book_of(out, expected)
    seconds = out.seconds if seconds is None else seconds
    record_row(record, case, book, seconds, out.returncode)

    codes = {name: machine.code for name, machine in run.machines.items()}
    wanted = {name: case.exit_code for name in run.machines} | (exits or {})
    assert codes == wanted, f"exit codes {codes}, expected {wanted}\n{tail(out.log, 8000)}"
    assert seconds < case.max_s, f"took {seconds:.1f}s, bound {case.max_s}s"
    assert not book.lost, f"lost: {book.lost[:20]}\n{tail(out.log, 8000)}"
    assert not book.duplicated, f"stored twice or stored and dead-lettered: {book.duplicated[:20]}"
    for name, machine in run.machines.items():
        texts = {
            "stdout": machine.stdout_path.read_text(),
            "log": machine.log(),
            "stats": machine.stats_path.read_text() if machine.stats_path.exists() else "",
            "dead letters": machine.letters_path.read_text() if machine.letters_path.exists() else "",
        }
        for secret in (CANARY, *secrets):
            for what, text in texts.items():
                assert secret not in text, f"a password appears in the {what} of {name}"
        if machine.code in (None, -signal.SIGKILL) or not case.stats:
            continue
        stats = json.loads(texts["stats"])
        assert stats["lost"] == 0, (name, stats)
        assert stats["exit_code"] == machine.code, (name, stats)
        assert texts["stdout"].strip().splitlines()[-1].endswith(f"exit {machine.code}"), f"no summary from {name}"
        for group_name, group in stats["groups"].items():
            assert group["in_flight"] == 0, (name, group_name, group)
        for queue_name, queue in stats["queues"].items():
            assert queue["left"] == 0, (name, queue_name, queue)
        assert stats["dead_letters"] == len(
            machine.letters_path.read_text().splitlines() if machine.letters_path.exists() else []
        )
    return out, book


def ledger_with_redis(out: Outcome, expected: list[Any], in_redis: list[Any]) -> Ledger:
    """The books of a run that lost Redis, or its keys: every symbol is stored, dead-lettered, or was in one
    of the run's Redis queues when they were lost (`in_redis`, counted as not run). Lost: in none of them. Duplicated: stored twice,
    dead-lettered twice, or both stored and dead-lettered. A symbol may be both dead-lettered as unsettled
    and pending in Redis (the dead letter says so), or stored and still in PostgresUploading (stored, its
    acknowledgement lost): at least once, and the sink's unique key makes a second store a no-op."""
    stored = Counter(out.stored)
    dead = Counter(symbol_of(letter) for letter in out.letters)
    redis = Counter(in_redis)
    wanted = Counter(expected)
    lost = sorted((wanted - stored - dead - redis).elements())
    twice = [s for s, n in (stored + dead).items() if n > 1]
    only_in_redis = sum(1 for symbol in wanted if symbol in redis and symbol not in stored and symbol not in dead)
    return Ledger(
        items=len(expected),
        stored=sum(stored.values()),
        dead_lettered=sum(dead.values()),
        lost=lost,
        duplicated=sorted(twice),
        not_started=only_in_redis,
    )


def queue_key(run_id: str, name: str) -> str:
    """The stream of queue `name` in run `run_id` (under the test's key prefix, conftest.py)."""
    return f"{os.environ['REDIS_KEY_PREFIX']}:pipeline:{run_id}:q:{name}"


def chart_requests(sites: FakeSites) -> int:
    """Chart requests the fake Yahoo has answered or is answering."""
    return sum(1 for _, path in list(sites.requests) if path.startswith(CHART))


def run_ledger(out: Outcome) -> dict[str, dict[str, int]]:
    """The reporter's view of the Redis queues at the end: per queue added, left, pending."""
    return out.stats["run"]["ledger"]


def assert_redis_drained(out: Outcome) -> None:
    """Every Redis queue of the run was read to its end, nothing is pending anywhere, and each got exactly
    one entry per symbol: nothing was emitted twice between Redis queues (the table alone could not tell,
    as the sink's unique key makes a second store a no-op)."""
    ledger = run_ledger(out)
    for name in ("SymbolQueue", "PostgresUploading"):
        assert ledger[name]["left"] == 0 and ledger[name]["pending"] == 0, ledger
        assert ledger[name]["added"] == len(SYMBOLS), ledger


# --- 1. three machines --------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["sink", "yahoo"])
def test_three_machines_store_every_symbol_once(tmp_path, db, redis_server, reliability, first):
    case = Case(
        SECTION,
        f"three machines, {'sink' if first == 'sink' else 'a Yahoo machine'} first",
        "A runs WikiWorker and PostgresWorker, B and C YahooFinanceWorker (4 instances each), one run id; "
        + (
            "A and B start together, C joins once B has priced 100 symbols"
            if first == "sink"
            else "B starts alone and waits for the run, A joins once B has started the run (its log says so), "
            "C once 100 symbols are priced"
        )
        + "; chart latency 20 ms",
        "the work is split between B and C; every symbol stored once; every machine exits 0",
        exit_code=0,
        max_s=60,
    )
    with FakeSites(latency_s=0.02) as sites, Run(tmp_path, sites, db, redis_server.url()) as run:
        if first == "sink":
            run.start("A", "WikiWorker,PostgresWorker")
            run.start("B", "YahooFinanceWorker")
        else:
            b = run.start("B", "YahooFinanceWorker")
            wait_until(lambda: f"started run {run.run_id} " in b.log(), 30, "B starting the run", b)
            run.start("A", "WikiWorker,PostgresWorker")
        wait_until(lambda: chart_requests(sites) >= 100, 30, "100 charts requested", run.machines["B"])
        run.start("C", "YahooFinanceWorker")
        run.wait()
        out, book = finish_run(reliability, case, run, SYMBOLS)

    # The order the machines came in: one started the run (B, when it came first), the others joined it.
    starts = {
        name: "started"
        if f"started run {run.run_id} " in machine.log()
        else "joined"
        if f"joined run {run.run_id} " in machine.log()
        else "neither"
        for name, machine in run.machines.items()
    }
    assert sorted(starts.values()) == ["joined", "joined", "started"], starts
    if first == "yahoo":
        assert starts["B"] == "started", starts

    assert sorted(out.stored) == sorted(SYMBOLS)
    assert_redis_drained(out)
    priced = {
        name: json.loads(run.machines[name].stats_path.read_text())["groups"]["YahooFinanceWorker"] for name in "BC"
    }
    assert priced["B"]["emitted"] + priced["C"]["emitted"] == len(SYMBOLS), priced
    assert priced["B"]["emitted"] >= 100 and priced["C"]["emitted"] > 0, priced


# --- 2. a consumer killed mid-item ----------------------------------------------------------------


def test_consumer_killed_mid_item_its_items_are_claimed(tmp_path, db, redis_server, reliability):
    case = Case(
        SECTION,
        "a consumer machine killed mid-item",
        "B and C run YahooFinanceWorker (8 instances each, chart latency 0.3 s, SymbolQueue "
        "`visibility_timeout_s: 2`); B gets SIGKILL once 100 charts were requested, items in hand",
        "C claims the entries B held once they idle past 2 s and logs each claim; every symbol stored "
        "once; A and C exit 0",
        exit_code=0,
        max_s=60,
    )
    with (
        FakeSites(latency_s=0.3) as sites,
        Run(
            tmp_path,
            sites,
            db,
            redis_server.url(),
            queue_sets=("queues.SymbolQueue.visibility_timeout_s=2", "workers.YahooFinanceWorker.instances=8"),
        ) as run,
    ):
        run.start("A", "WikiWorker,PostgresWorker")
        b = run.start("B", "YahooFinanceWorker")
        run.start("C", "YahooFinanceWorker")
        wait_until(lambda: chart_requests(sites) >= 100, 30, "100 charts requested", b)
        b.proc.kill()
        killed_at = time.time()  # wall clock, as the log's timestamps
        b.wait(10)
        run.wait()
        out, book = finish_run(reliability, case, run, SYMBOLS, exits={"B": -signal.SIGKILL})

    assert sorted(out.stored) == sorted(SYMBOLS)
    assert_redis_drained(out)
    claims = [line for line in run.machines["C"].log().splitlines() if "SymbolQueue: claimed" in line]
    assert claims, "C logged no claim"
    assert all("past visibility_timeout_s=2" in line for line in claims)
    # B held at most its 8 instances' items plus what it had fetched for them (prefetch 16), and while it
    # lived it renewed their leases: nothing is claimed before the kill, and the first claim comes within
    # the timeout (2 s) and a few claim intervals (1 s) after it.
    assert 1 <= len(claims) <= 16, claims
    claimed_at = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() for line in claims]
    assert killed_at < min(claimed_at) < killed_at + 8, (killed_at, claims)
    processes = json.loads(run.machines["A"].stats_path.read_text())["run"]["processes"]
    assert len(processes) == 3, processes  # B's last published counts are in the run's report too


# --- 3. the producer killed holding the page ------------------------------------------------------


def test_producer_killed_holding_the_page_is_taken_over(tmp_path, db, redis_server, reliability):
    case = Case(
        SECTION,
        "the producer machine killed holding its input",
        "W1 runs WikiWorker alone; the Wikipedia answer takes 3 s and W1 gets SIGKILL while waiting "
        "for it (the page taken, not settled); W2 runs WikiWorker with the same run id",
        "W2 claims the page once it idles past the visibility timeout (that of the queue the source "
        "feeds: SymbolQueue's, 3 s here), fetches it again and writes its 503 symbols with the "
        "acknowledgement in one step: every symbol stored once; A, B and W2 exit 0",
        exit_code=0,
        max_s=45,
    )
    with (
        FakeSites(latency_s=0.01) as sites,
        Run(tmp_path, sites, db, redis_server.url(), queue_sets=("queues.SymbolQueue.visibility_timeout_s=3",)) as run,
    ):
        sites.script(WIKI_PATH, Fault(200, sites.page, delay_s=3))
        w1 = run.start("W1", "WikiWorker")
        wait_until(lambda: sites.hits[WIKI_PATH] >= 1, 20, "the page requested", w1)
        w1.proc.kill()
        w1.wait(10)
        run.start("A", "PostgresWorker")
        run.start("B", "YahooFinanceWorker")
        run.start("W2", "WikiWorker")
        run.wait(MACHINE_TIMEOUT_S)
        out, book = finish_run(reliability, case, run, SYMBOLS, exits={"W1": -signal.SIGKILL})

    assert sorted(out.stored) == sorted(SYMBOLS)
    assert_redis_drained(out)
    assert sites.hits[WIKI_PATH] == 2
    assert "WikiWorker.values: claimed" in run.machines["W2"].log()
    assert json.loads(run.machines["W2"].stats_path.read_text())["groups"]["WikiWorker"]["emitted"] == len(SYMBOLS)


# --- 4. Redis restarted ---------------------------------------------------------------------------


def test_redis_restarted_mid_run(tmp_path, db, redis_server, reliability):
    case = Case(
        SECTION,
        "Redis restarted mid-run",
        "the run's own redis-server (AOF on, `appendfsync always`) stopped gracefully once 100 charts "
        "were requested, and started again 1 s later on the same port and folder",
        "every process retries within its retry budget and goes on where it was; every symbol stored "
        "once; every machine exits 0",
        exit_code=0,
        max_s=60,
    )
    with FakeSites(latency_s=0.02) as sites, Run(tmp_path, sites, db, redis_server.url()) as run:
        run.start("A", "WikiWorker,PostgresWorker")
        b = run.start("B", "YahooFinanceWorker")
        wait_until(lambda: chart_requests(sites) >= 100, 30, "100 charts requested", b)
        redis_server.restart(down_s=1.0)
        run.wait()
        out, book = finish_run(reliability, case, run, SYMBOLS)

    assert sorted(out.stored) == sorted(SYMBOLS)
    assert_redis_drained(out)
    assert "retrying in" in out.log  # the restart was noticed
    # and cost no visibility timeout: what a read lost with the connection was taken back at once
    assert ": claimed " not in out.log


# --- 5. Redis unreachable at start ------------------------------------------------------------------


def test_redis_unreachable_at_start_fails_before_fetching(sites, tmp_path, reliability):
    case = Case(
        SECTION,
        "Redis unreachable at start",
        "`REDIS_URL` (with a password) names a closed port; the shipped pipeline in one process, its two "
        "queues in Redis",
        "fails before any fetch (zero HTTP requests) with the masked URL and the reason; the Wikipedia "
        "URL dead-lettered as not started; exit 1 in seconds",
        exit_code=1,
        max_s=10,
    )
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"

    out = run_solo(sites, tmp_path, None, env={"REDIS_URL": url}, args=REDIS_QUEUES, read_back=False)

    finish(reliability, case, out, [sites.wiki_url])
    assert not sites.requests
    assert [(letter["group"], letter["kind"]) for letter in out.letters] == [("WikiWorker", "not-started")]
    assert out.stats["finish_reason"] == "failed"
    assert (
        out.stats["error"].startswith("Redis at redis://:***@127.0.0.1:") and "cannot be reached" in out.stats["error"]
    )
    assert "Connection refused" in out.log and REDIS_PASSWORD not in out.log + out.stdout + out.stats_text


# --- 6. Redis lost for good -----------------------------------------------------------------------


def redis_leftovers(server: RedisServer) -> dict[str, list[Any]]:
    """What the run's queues still hold in Redis (read back from the AOF after the run: the test starts the
    server again for that): per queue, the items of its entries, delivered or not."""
    from core.base import codec

    server.start()
    left: dict[str, list[Any]] = {}
    with server.client() as client:
        for name in ("SymbolQueue", "PostgresUploading"):
            keys = list(client.scan_iter(match=queue_key("*", name)))
            assert len(keys) == 1, keys  # this test's run only
            left[name] = [codec.loads(fields[b"d"]) for _, fields in client.xrange(keys[0])]
    return left


@pytest.mark.parametrize("split", ["two machines", "one process"])
def test_redis_lost_for_good_dead_letters_what_is_in_hand(tmp_path, db, redis_server, reliability, split):
    solo = split == "one process"
    case = Case(
        SECTION,
        f"Redis down longer than the retry budget ({split})",
        "the run's redis-server stopped for good once 8 charts were requested (`REDIS_RETRY_BUDGET_S=3`, "
        "chart latency 2 s, `read_timeout_s: 5`, so instances hold items and more wait fetched for them); "
        + (
            "the shipped pipeline in one process, no run id"
            if solo
            else "A runs WikiWorker and PostgresWorker, B YahooFinanceWorker"
        ),
        "every process ends within the budget and a few seconds, exit 1, saying Redis was lost; each item "
        "an instance held is dead-lettered locally as `unsettled`"
        + (", each fetched for them as `stopping`" if solo else "")
        + " (it stays pending in Redis). "
        "Counted: stored + dead letters + *not run* = what the run's queues still hold in Redis "
        "(its AOF read after the run) and nowhere else; every symbol in one of them, none stored twice "
        "or both stored and dead-lettered",
        exit_code=1,
        max_s=15,
        timing="Redis stop to last exit",
    )
    with (
        FakeSites(latency_s=2.0) as sites,
        Run(
            tmp_path, sites, db, redis_server.url(), yahoo={"read_timeout_s": 5}, env={"REDIS_RETRY_BUDGET_S": "3"}
        ) as run,
    ):
        if solo:
            first = run.start("A", None)
        else:
            run.start("A", "WikiWorker,PostgresWorker")
            first = run.start("B", "YahooFinanceWorker")
        wait_until(lambda: chart_requests(sites) >= 8, 30, "8 charts requested", first)
        redis_server.stop()
        stopped = time.monotonic()
        run.wait(30)
        seconds = max(machine.ended for machine in run.machines.values()) - stopped
        left = redis_leftovers(redis_server)
        in_redis = [*left["SymbolQueue"], *(record["symbol"] for record in left["PostgresUploading"])]
        out, book = finish_run(
            reliability,
            case,
            run,
            SYMBOLS,
            seconds=seconds,
            book_of=lambda out, expected: ledger_with_redis(out, expected, in_redis),
        )

    assert "unreachable for 3s (the retry budget)" in out.log
    for name, machine in run.machines.items():
        stats = json.loads(machine.stats_path.read_text())
        assert stats["finish_reason"] == "failed" and "the retry budget" in stats["error"], (name, stats)
    kinds = Counter(letter["kind"] for letter in out.letters)
    assert kinds["unsettled"] >= 1 and set(kinds) <= {"unsettled", "stopping"}, kinds
    if solo:  # what was fetched for the instances is this run's alone: recorded here too (it used to hang)
        assert kinds["stopping"] >= 1, kinds
    assert all(letter["group"] == "YahooFinanceWorker" for letter in out.letters), out.letters
    # A dead-lettered item stays pending in Redis: a run that took it up again would find it there.
    assert {letter["item"] for letter in out.letters} <= set(left["SymbolQueue"])
    assert book.not_started > 0  # most of the page was never priced: it is still in SymbolQueue


# --- 7. a machine cut off from Redis ----------------------------------------------------------------


class FakeSitesOn(FakeSites):
    """The fake sites listening on `host` (the host side of a veth pair) instead of 127.0.0.1, so that a
    process in a network namespace reaches them too; the host's processes use the same address."""

    def __init__(self, host: str, **options: Any) -> None:
        super().__init__(**options)
        server_class, handler = type(self.server), self.server.RequestHandlerClass
        self.server.server_close()
        self.server = server_class((host, 0), handler)
        self.server.daemon_threads = True
        self.server.sites = self
        self._thread = threading.Thread(target=self.server.serve_forever, name="FakeSites", daemon=True)


class MainRunIn(MainRun):
    """MainRun inside a network namespace: the same environment, files and command, run by `ip netns exec`
    (which execs it, so the process is main itself)."""

    def __init__(
        self, namespace: Namespace, folder: Path, pipeline: Path, *, env: dict[str, str], args: tuple[str, ...]
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.stats_path, self.letters_path = folder / "stats.json", folder / "dead_letters.jsonl"
        self.stdout_path, self.stderr_path = folder / "stdout.txt", folder / "stderr.txt"
        environment = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_ENV)}
        environment.update(
            ENV_FILE=os.devnull, DATA_DIR=str(folder / "data"), DEAD_LETTER_PATH=str(self.letters_path), **env
        )
        command = namespace.command(
            sys.executable,
            str(ROOT / "main.py"),
            "--pipeline",
            str(pipeline),
            "--stats-json",
            str(self.stats_path),
            *args,
        )
        with self.stdout_path.open("w") as stdout, self.stderr_path.open("w") as stderr:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
            )
        self.ended: float | None = None
        self.code: int | None = None


def test_partitioned_machine_is_refused_its_stale_settles(tmp_path, db, reliability):
    case = Case(
        SECTION,
        "a machine cut off from Redis (network partition)",
        "P runs YahooFinanceWorker in a network namespace whose only route to Redis is a veth pair; "
        "its cable is pulled for 6 s (SymbolQueue `visibility_timeout_s: 2`, retry budget 20 s) once "
        "150 charts were requested, while C runs YahooFinanceWorker on the host; chart latency 0.1 s",
        "C claims the entries P held; P finishes them meanwhile (the sites stay reachable over a second "
        "link), and once back its settles are refused (it no longer owns them): nothing emitted twice "
        "(PostgresUploading got exactly one entry per symbol), every symbol stored once, every machine "
        "exits 0",
        exit_code=0,
        max_s=60,
    )
    with Namespace() as namespace:
        to_redis, to_sites = namespace.link(), namespace.link()
        with (
            RedisServer(bind=("127.0.0.1", to_redis.host_ip)) as server,
            FakeSitesOn(to_sites.host_ip, latency_s=0.1) as sites,
            Run(tmp_path, sites, db, server.url(), queue_sets=("queues.SymbolQueue.visibility_timeout_s=2",)) as run,
        ):
            run.start("A", "WikiWorker,PostgresWorker")
            run.start("C", "YahooFinanceWorker")
            p = run.machines["P"] = MainRunIn(
                namespace,
                tmp_path / "P",
                run.pipeline,
                env={**run.env, "REDIS_URL": server.url(to_redis.host_ip)},
                args=("--run-id", run.run_id, "--only", "YahooFinanceWorker", "--quiet", *run.args),
            )
            wait_until(lambda: chart_requests(sites) >= 150, 30, "150 charts requested", p)
            namespace.cut(to_redis)
            time.sleep(6)
            namespace.mend(to_redis)
            run.wait()
            out, book = finish_run(reliability, case, run, SYMBOLS)

    assert sorted(out.stored) == sorted(SYMBOLS)
    assert_redis_drained(out)
    p_log, c_log = run.machines["P"].log(), run.machines["C"].log()
    assert "SymbolQueue: claimed" in c_log
    refused = [line for line in p_log.splitlines() if "was claimed by another consumer before it was settled" in line]
    assert refused, f"P had no settle refused\n{tail(p_log)}"
    p_stats = json.loads(run.machines["P"].stats_path.read_text())["groups"]["YahooFinanceWorker"]
    assert p_stats["received"] - p_stats["processed"] >= len(refused), p_stats  # counted as returned


# --- 8. the server's settings, its keys vanishing, foreign entries, the password -------------------


def test_eviction_policy_refuses_to_start(sites, tmp_path, reliability):
    case = Case(
        SECTION,
        "Redis may evict keys",
        "the run's redis-server has `maxmemory-policy allkeys-lru`; the shipped pipeline in one process",
        "refuses to start, saying why and what to set; nothing fetched, the Wikipedia URL dead-lettered "
        "as not started; exit 1 in seconds",
        exit_code=1,
        max_s=10,
    )
    with RedisServer(maxmemory_policy="allkeys-lru") as server:
        out = run_solo(sites, tmp_path, None, env={"REDIS_URL": server.url()}, args=REDIS_QUEUES, read_back=False)
        keys = server.keys()

    finish(reliability, case, out, [sites.wiki_url])
    assert not sites.requests
    assert [(letter["group"], letter["kind"]) for letter in out.letters] == [("WikiWorker", "not-started")]
    assert out.stats["finish_reason"] == "failed"
    assert "maxmemory-policy allkeys-lru" in out.stats["error"] and "noeviction" in out.stats["error"]
    assert not keys, f"a run that refused the server wrote to it: {keys}"


def test_aof_off_is_warned_about(sites, tmp_path, db, reliability):
    case = Case(
        SECTION,
        "Redis without persistence",
        "the run's redis-server has `appendonly no`; the shipped pipeline in one process",
        "a warning that a restart would lose the run, then the run as usual: every symbol stored once, exit 0",
        exit_code=0,
        max_s=30,
    )
    with RedisServer(appendonly=False) as server:
        out = run_solo(sites, tmp_path, db, env={"REDIS_URL": server.url()}, args=REDIS_QUEUES)

    finish(reliability, case, out, SYMBOLS)
    assert sorted(out.stored) == sorted(SYMBOLS)
    warnings = [line for line in out.log.splitlines() if "appendonly no" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], warnings


def test_run_keys_vanishing_stops_the_run_loudly(tmp_path, db, redis_server, reliability):
    case = Case(
        SECTION,
        "the run's keys vanish mid-run",
        "FLUSHALL on the run's redis-server once 100 charts were requested (chart latency 20 ms), in one "
        "transaction with a read of what the run's queues held then",
        "every process stops with exit 1 saying the run's state is gone; what they held is dead-lettered; "
        "counted: stored + dead letters + *not run* = what FLUSHALL destroyed; every symbol in one of them, "
        "none stored twice or both stored and dead-lettered",
        exit_code=1,
        max_s=40,
    )
    from core.base import codec

    with FakeSites(latency_s=0.02) as sites, Run(tmp_path, sites, db, redis_server.url()) as run:
        run.start("A", "WikiWorker,PostgresWorker")
        b = run.start("B", "YahooFinanceWorker")
        wait_until(lambda: chart_requests(sites) >= 100, 30, "100 charts requested", b)
        with redis_server.client() as client, client.pipeline(transaction=True) as flush:
            for name in ("SymbolQueue", "PostgresUploading"):
                flush.xrange(queue_key(run.run_id, name))
            flush.flushall()
            symbols, records, _ = flush.execute()
        destroyed = [codec.loads(fields[b"d"]) for _, fields in symbols] + [
            codec.loads(fields[b"d"])["symbol"] for _, fields in records
        ]
        run.wait(30)
        out, book = finish_run(
            reliability, case, run, SYMBOLS, book_of=lambda out, expected: ledger_with_redis(out, expected, destroyed)
        )

    for name, machine in run.machines.items():
        stats = json.loads(machine.stats_path.read_text())
        assert stats["finish_reason"] == "failed" and "no longer has run" in stats["error"], (name, stats["error"])
    assert book.not_started > 0
    # What B held when the keys went could not be settled: dead-lettered here, and it was in Redis then.
    assert {(letter["group"], letter["kind"]) for letter in out.letters} <= {("YahooFinanceWorker", "unsettled")}
    assert {letter["item"] for letter in out.letters} <= set(destroyed)


def test_foreign_entry_that_is_not_json_is_dead_lettered_never_run(tmp_path, db, redis_server, reliability):
    class Exploit:  # unpickling this runs a command: the proof that the entry was never unpickled
        def __reduce__(self):
            return (os.system, (f"touch {proof}",))

    proof = tmp_path / "unpickled"
    payload = pickle.dumps(Exploit(), protocol=pickle.HIGHEST_PROTOCOL)
    case = Case(
        SECTION,
        "a foreign entry that is not JSON",
        "someone else adds a pickle (one that would run a command if unpickled) to the run's SymbolQueue "
        "stream after the 503 symbols; B then starts YahooFinanceWorker",
        "dead-lettered as undecodable with its acknowledgement, never unpickled nor run; every symbol "
        "stored once; B exits 1 (its dead letter), and A, which reports the whole run, 1 too",
        exit_code=1,
        max_s=30,
    )
    with FakeSites() as sites, Run(tmp_path, sites, db, redis_server.url()) as run:
        run.start("A", "WikiWorker,PostgresWorker")
        stream = queue_key(run.run_id, "SymbolQueue")
        with redis_server.client() as client:
            wait_until(
                lambda: client.exists(stream) and client.xlen(stream) == len(SYMBOLS),
                20,
                "the symbols in SymbolQueue",
                run.machines["A"],
            )
            client.xadd(stream, {"d": payload, "n": 0})
        run.start("B", "YahooFinanceWorker")
        run.wait()
        # The entry's bytes, as the dead letter shows them (escaped where they are not text).
        out, book = finish_run(reliability, case, run, [*SYMBOLS, payload.decode("utf-8", "backslashreplace")])

    assert not proof.exists(), "the pickle was unpickled"
    assert sorted(out.stored) == sorted(SYMBOLS)
    (letter,) = out.letters
    assert letter["group"] == "YahooFinanceWorker" and letter["kind"] == "failed", letter
    assert "cannot be decoded" in letter["error"] and "not run" in letter["error"], letter
    ledger = run_ledger(out)
    assert ledger["dead letters in Redis"]["added"] == 1 and ledger["SymbolQueue"]["left"] == 0, ledger


def test_redis_password_never_shows(tmp_path, db, reliability):
    case = Case(
        SECTION,
        "Redis password",
        "the run's redis-server has `requirepass`; `REDIS_URL` carries the password; the server is restarted "
        "mid-run (so every process logs its URL, and errors, while retrying)",
        "the password appears nowhere: not in stdout, the logs, the stats or the dead letters (the URL is "
        "shown as `redis://:***@...`); every symbol stored once; every machine exits 0",
        exit_code=0,
        max_s=60,
    )
    with (
        RedisServer(password=REDIS_PASSWORD) as server,
        FakeSites(latency_s=0.02) as sites,
        Run(tmp_path, sites, db, server.url()) as run,
    ):
        run.start("A", "WikiWorker,PostgresWorker")
        b = run.start("B", "YahooFinanceWorker")
        wait_until(lambda: chart_requests(sites) >= 100, 30, "100 charts requested", b)
        server.restart(down_s=1.0)
        run.wait()
        out, book = finish_run(reliability, case, run, SYMBOLS, secrets=(REDIS_PASSWORD,))

    assert sorted(out.stored) == sorted(SYMBOLS)
    assert "redis://:***@127.0.0.1" in out.log and "retrying in" in out.log and ": claimed " not in out.log
    assert out.stats["run"]["redis"].startswith("redis://:***@")


def test_retry_budget_must_be_a_positive_number(sites, tmp_path):
    pipeline = fault_pipeline(sites, tmp_path)
    for bad in ("0", "-1", "soon", "inf", "nan"):
        result = run_main(
            ["--pipeline", str(pipeline), *REDIS_QUEUES, "--check"], env={"REDIS_RETRY_BUDGET_S": bad}, timeout_s=30
        )
        assert result.returncode == 2, (bad, result.stderr)
        assert f"REDIS_RETRY_BUDGET_S: must be a number of seconds above 0, got {bad!r}" in result.stderr, bad
    assert not sites.requests


def test_a_read_whose_reply_was_lost_is_taken_back_on_retry(redis_server):
    """A read the server answered while the connection dropped (a restart) delivered entries this consumer
    never saw: the retry takes them back at once, rather than after visibility_timeout_s."""
    import redis as redis_py

    from core.transport.redis.client import RedisRun
    from core.transport.redis.queue import RedisQueue

    run = RedisRun(redis_server.url(), "pipeline", f"test-{uuid.uuid4().hex[:8]}")
    try:
        queue = RedisQueue("Q", 10, run, reader="G", visibility_timeout_s=30)
        queue.stream.create()
        queue.put_many(["a", "b", "c"])
        queue.fetcher._read_client = reader = run.reader()  # noqa: SLF001 - the fetcher's own connection
        real_read, lost = reader.xreadgroup, []

        def read_losing_the_first_reply(*args: Any, **kwargs: Any) -> Any:
            reply = real_read(*args, **kwargs)
            if not lost:
                lost.append(reply)  # delivered on the server, never seen here
                raise redis_py.ConnectionError("Connection reset by peer")
            return reply

        reader.xreadgroup = read_losing_the_first_reply
        entries = run.call(queue.fetcher._reader(run.process_id, 10, 100))  # noqa: SLF001 - the fetcher's one read
        assert [fields[b"d"] for _, fields in entries] == [b'"a"', b'"b"', b'"c"']
        assert [entry_id for entry_id, _ in entries] == [entry_id for entry_id, _ in lost[0][0][1]]
        reader.close()
    finally:
        run.close()
