"""Yahoo's session (workers/yahoo_session.py) in both Yahoo stages, threads and asyncio, against a local Yahoo
that wants it (tests/yahoo_session_site.py): taken once for the group, sent with every chart request, taken again
once when the crumb expires mid-run, never per item; a refused crumb or a "Too Many Requests" crumb leaves the
stage going on without (the quote page); the `{"chart": null}` shapes fall back to the quote page. Every symbol is
checked against what the sink got and the dead letters."""

from __future__ import annotations

import logging
import uuid

import fixture_workers
import pytest
import yaml
from sites import price_for
from yahoo_session_site import COOKIE, YahooWithSession

from core.app.executor import YamlPipelineExecutor
from core.http import tape

TIMEOUT_S = 60.0
SYMBOLS = [f"S{index:02d}" for index in range(24)]
STAGES = {"threads": "YahooFinancePriceScheduler", "asyncio": "YahooFinancePriceAsyncScheduler"}


@pytest.fixture(params=list(STAGES))
def stage(request):
    return STAGES[request.param]


def run(tmp_path, site: YahooWithSession, stage: str, symbols=SYMBOLS):
    key = f"yahoo-session-{uuid.uuid4().hex[:8]}"
    source = {"name": "Source", "location": "fixture_workers", "class": "Source", "input_values": list(symbols)}
    yahoo = {"name": "Yahoo", "location": "workers.yahoo_finance_worker", "class": stage, "instances": 4}
    sink = {"name": "Sink", "location": "fixture_workers", "class": "Collect", "params": {"key": key}}
    pipeline = {
        "queues": [{"name": "Symbols", "maxsize": 100}, {"name": "Prices", "maxsize": 100}],
        "workers": [
            {**source, "output_queues": ["Symbols"]},
            {**yahoo, "input_queue": "Symbols", "output_queues": ["Prices"], "params": site.params},
            {**sink, "input_queue": "Prices"},
        ],
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl")
    executor.start()
    executor.join(TIMEOUT_S)
    assert not executor.is_alive()
    try:
        stored = {row["symbol"]: row["price"] for row in fixture_workers.collected(key)}
    finally:
        fixture_workers.forget(key)
    letters = (tmp_path / "dl.jsonl").read_text().splitlines() if (tmp_path / "dl.jsonl").exists() else []
    return executor.report, stored, letters


def test_the_session_is_taken_once_and_sent_with_every_chart_request(tmp_path, stage):
    with YahooWithSession() as site:
        report, stored, letters = run(tmp_path, site, stage)

    assert stored == {symbol: price_for(symbol) for symbol in SYMBOLS} and letters == []
    assert (site.counts["cookie"], site.counts["crumb"], site.counts["quote"]) == (1, 1, 0)  # once for 4 instances
    assert site.charts == [(COOKIE, "crumb-1")] * len(SYMBOLS)
    assert report.exit_code == 0


def test_a_crumb_expiring_mid_run_is_taken_again_once(tmp_path, stage):
    with YahooWithSession(rotate_after=10) as site:
        report, stored, letters = run(tmp_path, site, stage)

    assert stored == {symbol: price_for(symbol) for symbol in SYMBOLS} and letters == []
    assert site.counts["crumb"] == 2  # once more, however many items saw the old crumb refused
    assert site.counts["quote"] == 0  # each item refused went back to the chart with the new crumb
    assert {crumb for _, crumb in site.charts[-5:]} == {"crumb-2"}


def test_a_crumb_refused_again_leaves_the_stage_going_on_without_it(tmp_path, stage, caplog):
    caplog.set_level(logging.WARNING, logger="workers.yahoo_session")
    with YahooWithSession(refuse_all=True) as site:
        report, stored, letters = run(tmp_path, site, stage)

    assert stored == {symbol: price_for(symbol) for symbol in SYMBOLS} and letters == []  # from the quote page
    assert site.counts["crumb"] == 2  # the first, and one retake: never per item, never in a loop
    assert site.counts["quote"] == len(SYMBOLS)
    said = [r.getMessage() for r in caplog.records if "Yahoo session" in r.getMessage()]
    assert len(said) == 1 and "going on without cookie and crumb" in said[0]
    assert COOKIE not in caplog.text and "crumb-1" not in caplog.text  # the secrets are never logged


def test_a_crumb_of_too_many_requests_is_no_crumb(tmp_path, stage):
    with YahooWithSession(crumb_body="Too Many Requests") as site:
        report, stored, letters = run(tmp_path, site, stage)

    assert stored == {symbol: price_for(symbol) for symbol in SYMBOLS} and letters == []
    assert site.counts["crumb"] == 1
    assert all(crumb is None for _, crumb in site.charts)  # never sent as a crumb
    assert site.counts["quote"] == len(SYMBOLS)


def test_the_chart_null_shapes_fall_back_to_the_quote_page(tmp_path, stage):
    with YahooWithSession() as site:
        report, stored, letters = run(tmp_path, site, stage, symbols=["NULLA", "NULLB", "S01"])

    assert stored == {s: price_for(s) for s in ("NULLA", "NULLB", "S01")} and letters == []
    assert site.counts["quote"] == 2


def test_check_knows_the_session_params():
    from workers.yahoo_finance_worker import YahooFinancePriceScheduler

    check = YahooFinancePriceScheduler.check_params
    assert check({"cookie_url": "https://fc.example", "crumb_url": "http://x/getcrumb"}) == []
    assert check({"cookie_url": "fc.yahoo.com", "crumb_url": "http://x"}) == [
        ("cookie_url", "must be an http:// or https:// URL, got 'fc.yahoo.com'")
    ]
    assert check({"crumb_url": "http://x"}) == [
        ("cookie_url", "cookie_url and crumb_url go together: give both, or neither")
    ]


def test_a_chart_url_of_another_host_takes_no_session_unless_asked():
    """The shipped defaults point at Yahoo: a mirror or a test server must not make the stage call Yahoo."""
    from sites import StubGroup

    from workers.yahoo_finance_worker import YahooFinancePriceScheduler

    local = YahooFinancePriceScheduler(group=StubGroup(), index=0, chart_url="http://127.0.0.1:9/c/{symbol}")
    yahoo = YahooFinancePriceScheduler(group=StubGroup(), index=0)
    assert local.yahoo_session() is None
    session = yahoo.yahoo_session()
    assert (session.cookie_url, session.crumb_url) == (
        "https://fc.yahoo.com",
        "https://query1.finance.yahoo.com/v1/test/getcrumb",
    )


def test_a_recorded_session_keeps_no_secret_and_replays_offline(tmp_path, stage, monkeypatch):
    """--record-http keeps neither the cookie's value nor the crumb; offline, the stage takes its session from
    what was kept and finds each chart answer without the crumb: the same prices, with the server gone."""
    cassettes = tmp_path / "cassettes"
    monkeypatch.setenv(tape.RECORD_ENV, str(cassettes))
    monkeypatch.setenv(tape.NAME_ENV, "p")
    monkeypatch.setenv(tape.RECORDING_ENV, "r1")
    (tmp_path / "online").mkdir()
    with YahooWithSession() as site:
        _, recorded, letters = run(tmp_path / "online", site, stage)
    assert recorded == {symbol: price_for(symbol) for symbol in SYMBOLS} and letters == []
    text = "".join(path.read_text() for path in cassettes.glob("*.jsonl"))
    assert "test-cookie-value" not in text and "AQAAAsecret" not in text and "crumb-1" not in text
    assert text.count('"REDACTED"') == 1 and "A3=REDACTED; Expires=" in text  # the crumb, the cookie

    monkeypatch.delenv(tape.RECORD_ENV)
    monkeypatch.setenv(tape.OFFLINE_ENV, str(cassettes))
    (tmp_path / "offline").mkdir()
    report, replayed, letters = run(tmp_path / "offline", site, stage)
    assert replayed == recorded and letters == [] and report.exit_code == 0
