"""Many items failing the same way: the log keeps the first few tracebacks of each distinct error and one line per
item after them, with a count; the report ends with the errors grouped (count, first item, message). Seen: 285
failing items printed 285 full tracebacks (2,581 log lines) and the report summed nothing up.

Run over threads, worker processes and Redis queues (the `mode` fixture of test_executor)."""

from __future__ import annotations

import logging

from test_executor import (  # noqa: F401
    _mode,
    assert_accounted,
    dead_letters,
    groups,
    key,
    mode,
    pipeline,
    run,
    source,
    stage,
)

from core.run.hand import TRACEBACKS_PER_ERROR

ITEMS = 60


def test_the_same_error_many_times_is_logged_in_full_a_few_times_then_counted(tmp_path, key, mode, caplog):
    caplog.set_level(logging.WARNING)
    values = [f"SYM{i}" for i in range(ITEMS)]
    executor, report = run(
        tmp_path,
        pipeline(
            {"Symbols": 10, "Prices": 10},
            source("Source", values, "Symbols"),
            stage("Price", "FailEvery", "Symbols", ["Prices"]),
            stage("Sink", "Collect", "Prices", key=key),
        ),
    )

    records = dead_letters(tmp_path)
    assert sorted(r["item"] for r in records) == sorted(values)  # every item dead-lettered, none lost
    assert {r["error"] for r in records} == {f"ValueError: no price for {v!r}" for v in values}
    assert groups(report)["Price"].dead_lettered == ITEMS
    assert_accounted(report)

    failures = [r for r in caplog.records if "failed on" in r.getMessage()]
    assert len(failures) == ITEMS  # one line per item, never dropped
    with_traceback = [r for r in failures if r.exc_info or r.exc_text]
    processes = 2 if _mode[0] == "processes" else 1  # each process logs its own first few
    assert 1 <= len(with_traceback) <= TRACEBACKS_PER_ERROR * processes, len(with_traceback)
    later = [r for r in failures if not (r.exc_info or r.exc_text)]
    assert later and all("the same error" in r.getMessage() for r in later), later[0].getMessage()

    [grouped] = report.errors
    assert grouped["group"] == "Price" and grouped["kind"] == "failed" and grouped["count"] == ITEMS
    assert grouped["first_item"] in values
    assert grouped["error"] == f"ValueError: no price for {grouped['first_item']!r}"
    table = report.table().splitlines()
    assert table[-2:] == [
        "errors (count, group, first item, first error):",
        f"  {ITEMS} x Price failed, first {grouped['first_item']!r}: {grouped['error']}",
    ]
    assert report.to_dict()["errors"] == report.errors


def test_distinct_errors_are_grouped_apart_and_the_most_frequent_comes_first(tmp_path, key):
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 10, "Passed": 10},
            source("Source", list(range(9)), "Numbers"),
            stage("Odd", "FailOdd", "Numbers", ["Passed"]),
            stage("Sink", "FailEvery", "Passed"),
        ),
    )

    assert [(e["group"], e["count"]) for e in report.errors] == [("Sink", 5), ("Odd", 4)]
    assert report.errors[1]["error"].startswith("ItemError: odd number ")
    assert len(dead_letters(tmp_path)) == 9


def test_error_shape_keeps_what_differs_and_drops_the_item():
    from core.base.errors import error_shape

    assert error_shape("ValueError: no price for 'AAPL'", "AAPL") == "ValueError: no price for <item>"
    assert error_shape("TimeoutError: read timed out after 2.51s", "X") == "TimeoutError: read timed out after N.Ns"
    assert error_shape("HTTPError: 404 for /AAPL", "AAPL") != error_shape("HTTPError: 503 for /AAPL", "AAPL")
    assert error_shape("odd number 3", 3) == "odd number <item>"
    assert error_shape("HTTP 404 for item 4", 4) == "HTTP 404 for item <item>"  # only where it stands alone
