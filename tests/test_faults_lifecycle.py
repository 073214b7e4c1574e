"""Fault injection, second half: crashes in the middle of an item or a batch, and the ways a run ends
(stopped, forced, replayed, unable to record). Same harness and rules as tests/test_faults.py: each case runs
`python main.py` on a copy of the shipped pipeline against local stand-ins and a real PostgreSQL, checks
every input item against the table and the dead letters, checks the stats the run wrote, and records
its row for docs/RELIABILITY.md.
"""

from __future__ import annotations

import signal

import pytest
from fault_harness import (
    CANARY,
    SYMBOLS,
    Case,
    MainRun,
    blocked_writers,
    count,
    fault_pipeline,
    finish,
    pg_connect,
    pick,
    record_row,
    row_count,
    run,
    symbol_of,
    table_locked,
    wait_until,
    with_password,
)
from sites import FakeSites

from conftest import ROOT

CRASHING = {"PYTHONPATH": str(ROOT / "tests")}


@pytest.fixture
def db(pg_url: str) -> str:
    """A fresh database on the local PostgreSQL; the URL carries the canary password (trust auth takes any)."""
    return with_password(pg_url, CANARY)


# --- crashes in the middle of the work ----------------------------------------------------------------


def test_instance_ending_in_the_middle_of_an_item(sites, tmp_path, db, reliability):
    target = pick(120)[0]
    case = Case(
        "Crash",
        "instance ends mid-item",
        f"a YahooFinanceWorker instance raises SystemExit in the middle of `{target}` (4 instances)",
        "that item, in hand, is dead-lettered as crashed; the 3 other instances process the rest; exit 1",
        exit_code=1,
        max_s=30,
    )

    out = run(
        sites,
        tmp_path,
        db,
        env=CRASHING,
        yahoo={"exit_on": target},
        classes={"YahooFinanceWorker": ("crashing_workers", "YahooExitsOnSymbol")},
    )

    book = finish(reliability, case, out, SYMBOLS)
    assert [(letter["item"], letter["kind"]) for letter in out.letters] == [(target, "crashed")]
    assert "SystemExit" in out.letters[0]["error"]
    assert book.stored == len(SYMBOLS) - 1
    assert out.stats["groups"]["YahooFinanceWorker"]["crashed"] == 1


@pytest.mark.parametrize("queues", ["local", "redis"])
def test_worker_process_killed_by_its_own_item(sites, tmp_path, db, reliability, queues):
    target = pick(240)[0]
    through = " through Redis queues" if queues == "redis" else ""
    case = Case(
        "Crash",
        f"worker process killed by its own item{through}",
        f"YahooFinanceWorker runs in 2 worker processes x 4 instances{through}; the process SIGKILLs itself "
        f"in the middle of `{target}` (a poison item: the OOM killer, a segfault in a C library)",
        "only what the process's 4 instances held is dead-lettered, as crashed: that item (once, never sent "
        "to another process) and at most the 3 its other instances were fetching; the process is replaced at "
        "once and every other symbol is stored; exit 1",
        exit_code=1,
        max_s=40,
    )
    args = ["--set", "workers.YahooFinanceWorker.processes=2"]
    if queues == "redis":
        args += ["--set", "queues.SymbolQueue.backend=redis", "--set", "queues.PostgresUploading.backend=redis"]

    out = run(
        sites,
        tmp_path,
        db,
        env=CRASHING,
        yahoo={"kill_on": target},
        args=tuple(args),
        classes={"YahooFinanceWorker": ("crashing_workers", "YahooKillsItsProcess")},
    )

    book = finish(reliability, case, out, SYMBOLS)
    assert target in [letter["item"] for letter in out.letters] and 1 <= len(out.letters) <= 4, out.letters
    assert {letter["kind"] for letter in out.letters} == {"crashed"}
    assert all("killed by SIGKILL" in letter["error"] for letter in out.letters)
    assert book.stored == len(SYMBOLS) - len(out.letters)
    assert out.log.count("replaced by pid") == 1


def test_sink_ending_while_it_writes_a_batch(sites, tmp_path, db, reliability):
    case = Case(
        "Crash",
        "sink ends writing a batch, mid-run",
        "PostgresWorker's only instance raises SystemExit while writing its 3rd batch (`batch_size: 20`)",
        "the 20 rows of that batch are dead-lettered as crashed; its queue is closed and everything "
        "still coming is dead-lettered; 40 rows stored; exit 1",
        exit_code=1,
        max_s=30,
    )

    out = run(
        sites,
        tmp_path,
        db,
        env=CRASHING,
        sink={"exit_on_batch": 3, "flush_interval_s": 600},
        classes={"PostgresWorker": ("crashing_workers", "PostgresExitsWriting")},
    )

    book = finish(reliability, case, out, SYMBOLS)
    crashed = [letter for letter in out.letters if letter["kind"] == "crashed"]
    assert len(crashed) == 20 and all(letter["group"] == "PostgresWorker" for letter in crashed)
    assert book.stored == 40 and book.dead_lettered == len(SYMBOLS) - 40
    assert out.stats["groups"]["PostgresWorker"]["crashed"] == 1


def test_sink_ending_while_it_flushes_the_last_partial_batch(sites, tmp_path, db, reliability):
    case = Case(
        "Crash",
        "sink ends flushing a partial batch",
        "PostgresWorker raises SystemExit while writing its last batch, the 3 rows left at the end "
        "(`batch_size: 20`, 503 symbols)",
        "those 3 rows, held in the batch, are dead-lettered as crashed; the other 500 stored; exit 1",
        exit_code=1,
        max_s=30,
    )

    out = run(
        sites,
        tmp_path,
        db,
        env=CRASHING,
        sink={"exit_on_partial": True, "flush_interval_s": 600},
        classes={"PostgresWorker": ("crashing_workers", "PostgresExitsWriting")},
    )

    book = finish(reliability, case, out, SYMBOLS)
    assert book.stored == 500
    assert len(out.letters) == 3 and {letter["kind"] for letter in out.letters} == {"crashed"}


def test_one_bad_row_is_split_out_of_its_batch(sites, tmp_path, db, reliability):
    bad = pick(250)[0]
    case = Case(
        "Crash",
        "one row the database refuses",
        f"the record of `{bad}` carries a text price; the database refuses its batch (`batch_size: 20`)",
        "the batch is split in halves until the bad row is alone: only it is dead-lettered (its data "
        "error as the reason), the other 502 stored; exit 1",
        exit_code=1,
        max_s=30,
    )

    out = run(
        sites,
        tmp_path,
        db,
        env=CRASHING,
        yahoo={"bad": bad},
        sink={"flush_interval_s": 600},
        classes={"YahooFinanceWorker": ("crashing_workers", "YahooWrongType")},
    )

    book = finish(reliability, case, out, SYMBOLS)
    assert [symbol_of(letter) for letter in out.letters] == [bad]
    assert "not a number" in out.letters[0]["error"] and out.letters[0]["kind"] == "failed"
    assert book.stored == len(SYMBOLS) - 1


# --- how a run ends ------------------------------------------------------------------------------------


def test_database_stall_during_a_stop_is_abandoned_on_file_then_replayed(tmp_path, db, reliability):
    case = Case(
        "Signals",
        "database stalls during a stop (watchdog), then `--replay`",
        "once 40 rows are stored the table is locked, so the sink's next write waits (its statement "
        "timeout, 30 s by default, is longer than `--shutdown-timeout 3`); SIGTERM; then `main.py "
        "--replay` of the dead letters with the table free",
        "the watchdog exits with 143 after 3 s: the batch being written, the queued records and the "
        "symbols not yet fetched are all in the dead letters (abandoned or stopping), the stats say "
        "`forced`; the replay stores every one of them: each symbol stored exactly once; exit 0",
        exit_code=143,
        max_s=3 + 4,
        timing="SIGTERM to exit",
    )
    with FakeSites(latency_s=0.02) as sites:
        pipeline = fault_pipeline(sites, tmp_path, sink={"statement_timeout_s": 30})
        with MainRun(tmp_path / "first", pipeline, database_url=db, args=("--shutdown-timeout", "3")) as main:
            wait_until(lambda: row_count(db) >= 40, 30, "40 rows stored", main)
            with table_locked(db):
                wait_until(lambda: blocked_writers(db), 30, "a write waiting on the lock", main)
                signalled = main.signal(signal.SIGTERM)
                main.wait(30)
        out = main.outcome(db)

        book = finish(reliability, case, out, SYMBOLS, seconds=main.ended - signalled)
        assert out.stats["finish_reason"] == "forced" and "shutdown-timeout" in out.stats["error"]
        abandoned = [letter for letter in out.letters if letter["kind"] == "abandoned"]
        assert any(letter["group"] == "PostgresWorker" for letter in abandoned), "the batch in the write is missing"
        assert book.stored < len(SYMBOLS)

        with MainRun(
            tmp_path / "replay", pipeline, database_url=db, args=("--replay", str(main.letters_path))
        ) as replay:
            replay.wait(60)
        again = replay.outcome(db)

    assert again.returncode == 0, again.log[-3000:]
    assert sorted(again.stored) == sorted(SYMBOLS)  # every symbol exactly once, across both runs
    assert again.stats["groups"]["WikiWorker"]["received"] == 0  # the source's page was not fetched again
    assert "replaying" in again.log


def test_stop_before_the_source_took_its_page(sites, tmp_path, db, reliability):
    case = Case(
        "Signals",
        "SIGTERM before the source starts",
        "a course-era `prices` table without the unique key exists and is locked, so the sink's start "
        "(adding the key) waits; SIGTERM meanwhile, then the lock is released",
        "the Wikipedia URL, never taken by an instance, is dead-lettered as not started (the file can be "
        "replayed); nothing is fetched; exit 143",
        exit_code=143,
        max_s=30,
    )
    conn = pg_connect(db)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE prices (id serial PRIMARY KEY, symbol text NOT NULL, price double precision,"
                " extracted_time timestamp)"
            )
    finally:
        conn.close()
    with MainRun(tmp_path, fault_pipeline(sites, tmp_path), database_url=db) as main:
        with table_locked(db):
            wait_until(lambda: blocked_writers(db), 30, "the sink's start waiting on the lock", main)
            main.signal(signal.SIGTERM)
            wait_until(lambda: "stop requested" in main.log(), 10, "the stop request", main)
        main.wait(30)
    out = main.outcome(db)

    finish(reliability, case, out, [sites.wiki_url])
    assert [(letter["item"], letter["kind"], letter["group"]) for letter in out.letters] == [
        (sites.wiki_url, "not-started", "WikiWorker")
    ]
    assert not sites.requests
    assert out.stats["finish_reason"] == "interrupted" and out.stats["not_started"] == 1


def test_dead_letter_file_that_cannot_be_written(sites, tmp_path, db, reliability):
    unknown = pick(30, 330)
    case = Case(
        "Dead letters",
        "dead-letter file cannot be written",
        "`DEAD_LETTER_PATH` lies under a regular file (so no folder can be made); 2 unknown symbols fail",
        "each failure is logged loudly with its record and never counted as dead-lettered: the stats "
        "show 2 lost and 2 write errors, the summary says so; exit 1",
        exit_code=1,
        max_s=30,
        stats=False,
    )
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with FakeSites(unknown=set(unknown)) as sites:
        pipeline = fault_pipeline(sites, tmp_path)
        with MainRun(tmp_path, pipeline, database_url=db, env={"DEAD_LETTER_PATH": str(blocker / "dl.jsonl")}) as main:
            main.wait()
    out = main.outcome(db)

    # Counted like every row (finish() would also demand that nothing is lost, which here is the point).
    book = count(out, SYMBOLS)
    record_row(reliability, case, book, out.seconds, out.returncode)

    stats = out.stats
    assert out.returncode == case.exit_code
    assert out.seconds < case.max_s
    assert sorted(book.lost) == sorted(unknown)  # in neither the table nor a dead letter: lost, as the stats say
    assert book.dead_lettered == 0  # the file could not be written: no dead letter at all
    assert not book.duplicated
    assert sorted(out.stored) == sorted(set(SYMBOLS) - set(unknown))
    assert stats["lost"] == len(book.lost)
    assert stats["dead_letters"] == 0
    assert stats["dead_letter_write_errors"] == 2
    assert stats["groups"]["YahooFinanceWorker"]["dead_lettered"] == 0
    assert "DEAD LETTERS COULD NOT BE WRITTEN" in out.stdout
    assert "2 ITEMS UNACCOUNTED FOR" in out.stdout
    assert out.log.count("CANNOT WRITE DEAD LETTER") == 2
    assert all(symbol in out.log for symbol in unknown)
    assert CANARY not in out.log + out.stdout + out.stats_text
