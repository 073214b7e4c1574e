"""The price stage: Yahoo's chart API, the quote page fallback, and the worker over HTTP."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sites import FIXTURES, MARKET_TIME, FakeSites, Fault, StubGroup, chart_body, price_for, quote_body

from conftest import SHIPPED_PIPELINE, run_main
from core.http.client import HttpClient, HttpSettings
from core.http.policy import HttpPolicy
from workers.base import ItemError
from workers.yahoo_finance_worker import (
    UnknownSymbol,
    YahooFinancePriceAsyncScheduler,
    YahooFinancePriceScheduler,
    YahooFinancePriceWorker,
)
from workers.yahoo_pages import parse_chart, parse_quote_page, template_problem, valid_price, yahoo_symbol

YAHOO = FIXTURES / "yahoo"
NOT_FOUND = YAHOO / "yahoo_chart_error_not_found.json"
EXTRACTED = datetime(2025, 7, 18, 21, 30, tzinfo=UTC)
FAST = HttpSettings(user_agent="yahoo-worker-tests", retries=1, backoff_s=0.01)
ERA3_PLACEHOLDER = "(price text, e.g. 1,234.56)"
CHART_TEMPLATE = "https://query1.finance.yahoo.com/v8/finance/chart/{symbol}"
QUOTE_TEMPLATE = "https://finance.yahoo.com/quote/{symbol}"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def chart(meta: dict | None) -> dict:
    """A chart body around `meta`; with None, a result that has no meta at all."""
    return {"chart": {"result": [{"meta": meta}] if meta is not None else [{}], "error": None}}


# --- yahoo_symbol, valid_price -------------------------------------------------------------------


@pytest.mark.parametrize("symbol, ticker", [("BRK.B", "BRK-B"), ("BF.B", "BF-B"), ("AAPL", "AAPL")])
def test_yahoo_symbol_writes_share_classes_with_a_dash(symbol: str, ticker: str) -> None:
    assert yahoo_symbol(symbol) == ticker


@pytest.mark.parametrize("value, price", [(220.69, 220.69), (155, 155.0), ("1,234.56", 1234.56), ("0.5", 0.5)])
def test_valid_price_accepts_positive_numbers(value, price: float) -> None:
    assert valid_price(value) == price


@pytest.mark.parametrize("value", [0, 0.0, -1.5, float("nan"), float("inf"), None, "", "N/A", "--", [1.0]])
def test_valid_price_refuses_everything_else(value) -> None:
    with pytest.raises(ItemError, match="no usable price"):
        valid_price(value)


# --- parse_chart on the real payloads ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, price, market_time",
    [
        ("yahoo_chart_AAPL_2024-09-18_1wk.json", 220.69, datetime(2024, 9, 18, 20, 0, 2, tzinfo=UTC)),
        ("yahoo_chart_MSFT_2021-11-01_1h_oldmeta.json", 329.37, datetime(2021, 11, 1, 20, 0, 2, tzinfo=UTC)),
        ("yahoo_chart_SPY_2026-02-20_1d.json", 689.43, datetime(2026, 2, 20, 21, 0, tzinfo=UTC)),
    ],
)
def test_parse_chart_reads_each_real_payload(name: str, price: float, market_time: datetime) -> None:
    payload = load(YAHOO / name)
    meta = payload["chart"]["result"][0]["meta"]
    assert market_time.timestamp() == meta["regularMarketTime"]  # the expected values agree with the file

    got_price, currency, when = parse_chart(payload)

    assert got_price == price == meta["regularMarketPrice"]
    assert currency == "USD"
    assert when == market_time
    assert when.utcoffset().total_seconds() == 0


def test_parse_chart_not_found_body_raises_item_error() -> None:
    with pytest.raises(ItemError, match="Not Found.*No data found"):
        parse_chart(load(NOT_FOUND))


def test_parse_chart_without_market_time_gives_none() -> None:
    assert parse_chart(chart({"regularMarketPrice": 12.5, "currency": "EUR"})) == (12.5, "EUR", None)


@pytest.mark.parametrize(
    "payload",
    [
        chart({"regularMarketPrice": 0.0, "currency": None, "regularMarketTime": MARKET_TIME}),
        chart({"regularMarketPrice": float("nan"), "currency": "USD"}),
        chart({"regularMarketPrice": -3.2, "currency": "USD"}),
        chart({"regularMarketPrice": 101.5, "currency": None}),
        chart({"regularMarketPrice": 101.5, "currency": ""}),
        chart({"currency": "USD"}),
        chart(None),
        {"chart": {"result": [], "error": None}},
        {"chart": {"result": []}},
        {"chart": {"result": None, "error": None}},
        {"chart": None},
        {},
        [],
        None,
    ],
    ids=[
        "zero-price-null-currency",
        "nan",
        "negative",
        "null-currency",
        "empty-currency",
        "no-price",
        "no-meta",
        "empty-result",
        "empty-result-no-error",
        "null-result",
        "null-chart",
        "empty-body",
        "list",
        "null",
    ],
)
def test_parse_chart_refuses_bodies_without_a_usable_price(payload) -> None:
    with pytest.raises(ItemError):
        parse_chart(payload)


def test_parse_chart_nan_from_json_text_raises_item_error() -> None:
    payload = load(YAHOO / "yahoo_chart_AAPL_2024-09-18_1wk.json")
    raw = json.dumps(payload).replace('"regularMarketPrice": 220.69', '"regularMarketPrice": NaN')
    assert "NaN" in raw
    with pytest.raises(ItemError, match="no usable price"):
        parse_chart(json.loads(raw))


@pytest.mark.parametrize("ticker", ["AAPL", "aapl"])
def test_parse_chart_accepts_the_chart_of_the_ticker_asked_for(ticker: str) -> None:
    assert parse_chart(load(YAHOO / "yahoo_chart_AAPL_2024-09-18_1wk.json"), ticker)[0] == 220.69


@pytest.mark.parametrize(
    "name, ticker",
    [
        ("yahoo_chart_AAPL_2024-09-18_1wk.json", "MSFT"),
        ("yahoo_chart_MSFT_2021-11-01_1h_oldmeta.json", "AAPL"),
        ("yahoo_chart_SPY_2026-02-20_1d.json", "SP"),
    ],
)
def test_parse_chart_refuses_another_symbols_chart(name: str, ticker: str) -> None:
    payload = load(YAHOO / name)
    shown = payload["chart"]["result"][0]["meta"]["symbol"]
    with pytest.raises(ItemError, match=f"the chart is for '{shown}', not '{ticker}': refused"):
        parse_chart(payload, ticker)


def test_parse_chart_compares_the_share_class_in_yahoos_form() -> None:
    assert parse_chart(json.loads(chart_body("BRK-B", 412.5)), "BRK-B")[0] == 412.5
    with pytest.raises(ItemError, match="not 'BRK.B'"):
        parse_chart(json.loads(chart_body("BRK-B", 412.5)), "BRK.B")


def test_parse_chart_without_a_symbol_is_refused_when_a_ticker_is_asked_for() -> None:
    payload = chart({"regularMarketPrice": 12.5, "currency": "EUR"})
    with pytest.raises(ItemError, match="the chart is for None, not 'AAPL'"):
        parse_chart(payload, "AAPL")


# --- parse_quote_page on each era's markup -------------------------------------------------------


def quote_snippets() -> list[str]:
    """The markup lines of the snippets file, in order: era 1, era 2 (CE, NVDA), era 3 (placeholder text)."""
    text = (YAHOO / "yahoo_quote_price_snippets.html").read_text()
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line.startswith("<") and not line.startswith("<!--") and not line.endswith("-->")]


def era3_snippet() -> str:
    """Era 3's real markup with its placeholder replaced by a price with a thousands separator."""
    line = quote_snippets()[3]
    assert ERA3_PLACEHOLDER in line
    return line.replace(ERA3_PLACEHOLDER, "1,234.56")


def test_snippets_file_has_the_four_expected_snippets() -> None:
    snippets = quote_snippets()
    assert len(snippets) == 4
    assert 'data-symbol="TTM"' in snippets[0] and 'data-test="qsp-price-change"' in snippets[0]
    assert 'data-symbol="CE"' in snippets[1]
    assert 'data-symbol="NVDA"' in snippets[2]
    assert snippets[3].startswith("<span") and 'data-testid="qsp-price"' in snippets[3]


@pytest.mark.parametrize(
    "index, symbol, price",
    [
        (0, "TTM", 25.175),  # era 1: `value`, not the rounded text 25.18, and not the change +0.87 beside it
        (1, "CE", 155.0),  # era 2: `data-value`
        (2, "NVDA", 121.935),  # era 2, later class hash: `data-value`, not the text 122.18
    ],
    ids=["era1-TTM", "era2-CE", "era2-NVDA"],
)
def test_parse_quote_page_reads_each_era(index: int, symbol: str, price: float) -> None:
    assert parse_quote_page(quote_snippets()[index], symbol) == price


def test_parse_quote_page_reads_era3_text_with_thousands_separator() -> None:
    assert parse_quote_page(era3_snippet(), "BKNG") == 1234.56


def test_parse_quote_page_era1_picks_the_price_when_the_change_comes_first() -> None:
    snippet = quote_snippets()[0]
    cut = snippet.index('<fin-streamer class="Fw(500)')
    price, change = snippet[:cut], snippet[cut:]
    assert 'data-field="regularMarketChange"' in change
    page = f"<html><body>{change}{price}</body></html>"
    assert parse_quote_page(page, "TTM") == 25.175


@pytest.mark.parametrize("main", [1, 2], ids=["era2-CE", "era2-NVDA"])
def test_parse_quote_page_era2_skips_the_change_streamer_and_ticker_bar(main: int) -> None:
    snippet = quote_snippets()[main]
    symbol = "CE" if main == 1 else "NVDA"
    ticker_bar = (
        '<fin-streamer class="yf-1tejb6" data-symbol="^GSPC" data-field="regularMarketPrice" '
        'data-trend="none" data-pricehint="2" data-value="5626.02" active=""><span>5,626.02</span>'
        "</fin-streamer>"
    )
    change = (
        f'<fin-streamer class="priceChange yf-mgkamr" data-symbol="{symbol}" '
        'data-testid="qsp-price-change" data-field="regularMarketChange" data-trend="txt" '
        'data-pricehint="2" data-value="-2.46" active=""><span>-2.46</span></fin-streamer>'
    )
    page = f"<html><body><header>{ticker_bar}</header><section>{change}{snippet}</section></body></html>"
    assert parse_quote_page(page, symbol) == (155.0 if main == 1 else 121.935)


def test_parse_quote_page_era3_skips_the_change_span() -> None:
    change = '<span class="txt-negative base yf-ipw1h0" data-testid="qsp-price-change">-12.34</span>'
    page = f"<html><body><div>{change}</div><div>{era3_snippet()}</div></body></html>"
    assert parse_quote_page(page, "BKNG") == 1234.56


def test_parse_quote_page_falls_back_to_the_symbols_streamer() -> None:
    # A streamer for another symbol (the ticker bar) comes first; the one for `symbol` is the price.
    page = (
        '<fin-streamer data-symbol="^DJI" data-field="regularMarketPrice" value="40000.1"></fin-streamer>'
        '<fin-streamer data-symbol="MMM" data-field="regularMarketPrice" value="131.2"></fin-streamer>'
    )
    assert parse_quote_page(page, "MMM") == 131.2


@pytest.mark.parametrize(
    "page",
    [
        "<html><body><h1>Apple Inc. (AAPL)</h1><p>Symbol lookup</p></body></html>",
        '<fin-streamer data-symbol="^GSPC" data-field="regularMarketPrice" value="5626.02"></fin-streamer>',
        '<span data-testid="qsp-price-change">+1.50</span>',
        "",
    ],
    ids=["no-price", "only-another-symbol", "only-the-change", "empty"],
)
def test_parse_quote_page_without_a_price_raises_item_error(page: str) -> None:
    with pytest.raises(ItemError, match="no price element"):
        parse_quote_page(page, "AAPL")


def test_parse_quote_page_with_an_unusable_price_raises_item_error() -> None:
    with pytest.raises(ItemError, match="no usable price"):
        parse_quote_page('<span class="base yf-ipw1h0" data-testid="qsp-price">--</span>', "AAPL")


@pytest.mark.parametrize(
    "index, asked", [(1, "NVDA"), (2, "CE"), (0, "AAPL")], ids=["era2-CE", "era2-NVDA", "era1-TTM"]
)
def test_parse_quote_page_refuses_another_symbols_price(index: int, asked: str) -> None:
    snippet = quote_snippets()[index]
    with pytest.raises(ItemError, match=f"the quote page is for '.+', not '{asked}': refused"):
        parse_quote_page(snippet, asked)


def test_parse_quote_page_compares_symbols_case_insensitively() -> None:
    assert parse_quote_page(quote_body("BRK-B", 412.5), "brk-b") == 412.5


# --- the URL templates (check_params) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "https://query1.finance.yahoo.com/v8/finance/chart/{symbol}",
        "https://finance.yahoo.com/quote/{symbol}?p={symbol}",
        "http://127.0.0.1:8080/chart/{symbol}?interval=1d&range={{5d}}",
    ],
)
def test_template_with_only_symbol_is_fine(template: str) -> None:
    assert template_problem(template) is None


@pytest.mark.parametrize(
    "template, message",
    [
        ("https://query1.finance.yahoo.com/v8/finance/chart/AAPL", "has no {symbol} placeholder"),
        ("https://x/chart/{sym}", "has the placeholder(s) {sym}; the only placeholder allowed is {symbol}"),
        ("https://x/chart/{0}", "has the placeholder(s) {0}; the only"),
        ("https://x/chart/{}", "has the placeholder(s) {}; the only"),
        ("https://x/chart/{symbol}/{range}", "has the placeholder(s) {range}; the only"),
        ("https://x/chart/{symbol!r}", "has the placeholder(s) {symbol!r}; the only"),
        ("https://x/chart/{symbol:>8}", "has the placeholder(s) {symbol:>8}; the only"),
        ("https://x/chart/{symbol.upper}", "has the placeholder(s) {symbol.upper}; the only"),
        ("https://x/chart/{symbol", "not a valid template (expected '}' before end of string); the only placeholder"),
        ("https://x/chart/symbol}", "not a valid template (Single '}' encountered"),
    ],
)
def test_template_problems_name_the_placeholder_allowed(template: str, message: str) -> None:
    problem = template_problem(template)
    assert problem is not None and problem.startswith(message)
    assert "{symbol}" in problem


@pytest.mark.parametrize("cls", [YahooFinancePriceScheduler, YahooFinancePriceAsyncScheduler])
def test_check_params_reports_each_bad_template_and_range(cls) -> None:
    params = {
        "chart_url": "https://x/chart/AAPL",
        "quote_url": "https://x/quote/{sym}",
        "retries": -1,
        "item_deadline_s": 0,
        "breaker_failures": 0,
        "read_timeout_s": "20",
        "requests_per_second": 5,
        "max_body_bytes": 0,
    }
    problems = dict(cls.check_params(params))
    assert set(problems) == {
        "chart_url",
        "quote_url",
        "retries",
        "item_deadline_s",
        "breaker_failures",
        "max_body_bytes",
    }
    assert "no {symbol} placeholder" in problems["chart_url"]
    assert "{sym}" in problems["quote_url"]
    assert problems["retries"] == "must be 0 or more, got -1"
    assert problems["item_deadline_s"] == "must be more than 0, got 0"
    assert problems["breaker_failures"] == "must be at least 1, got 0"
    assert problems["max_body_bytes"] == "must be at least 1, got 0"


@pytest.mark.parametrize("cls", [YahooFinancePriceScheduler, YahooFinancePriceAsyncScheduler])
def test_check_params_passes_the_shipped_params(cls) -> None:
    assert cls.check_params({"requests_per_second": 5, "chart_url": CHART_TEMPLATE, "quote_url": QUOTE_TEMPLATE}) == []
    assert cls.check_params({}) == []


def test_check_names_the_file_line_and_key_of_a_bad_template(tmp_path: Path) -> None:
    text = SHIPPED_PIPELINE.read_text().replace(f"chart_url: {CHART_TEMPLATE}", "chart_url: https://x/chart/{sym}")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "chart_url:" in row)

    result = run_main(["--check", "--pipeline", str(pipeline)])

    assert result.returncode == 2
    assert (
        f"{pipeline}:{line}: workers.YahooFinanceWorker.params.chart_url: has the placeholder(s) {{sym}}; "
        "the only placeholder allowed is {symbol}"
    ) in (result.stdout + result.stderr).splitlines()


# --- YahooFinancePriceWorker against a real server on 127.0.0.1 -------------------------------------


@pytest.fixture
def http():
    client = HttpClient(FAST)
    yield client
    client.close()


def price_worker(http: HttpClient, sites: FakeSites) -> YahooFinancePriceWorker:
    return YahooFinancePriceWorker(http, chart_url=sites.chart_url, quote_url=sites.quote_url, clock=lambda: EXTRACTED)


def chart_path(ticker: str) -> str:
    return f"/v8/finance/chart/{ticker}"


def quote_path(ticker: str) -> str:
    return f"/quote/{ticker}"


def test_worker_gives_the_chart_record(sites: FakeSites, http: HttpClient) -> None:
    record = price_worker(http, sites).get_price("AAPL")
    assert record == {
        "symbol": "AAPL",
        "price": price_for("AAPL"),
        "currency": "USD",
        "market_time": datetime.fromtimestamp(MARKET_TIME, UTC),
        "extracted_time": EXTRACTED,
    }
    assert sites.hits[chart_path("AAPL")] == 1
    assert sites.hits[quote_path("AAPL")] == 0


def test_worker_asks_for_the_dash_form_and_keeps_the_dot_form(sites: FakeSites, http: HttpClient) -> None:
    record = price_worker(http, sites).get_price("BRK.B")
    assert sites.hits[chart_path("BRK-B")] == 1
    assert sites.hits[chart_path("BRK.B")] == 0
    assert record["symbol"] == "BRK.B"
    assert record["price"] == price_for("BRK-B")
    assert record["currency"] == "USD"


def test_worker_unknown_symbol_raises_after_one_chart_request_and_no_quote_page(http: HttpClient) -> None:
    with FakeSites(unknown={"ZZZZ"}) as sites:
        with pytest.raises(UnknownSymbol, match="ZZZZ") as caught:
            price_worker(http, sites).get_price("ZZZZ")
        assert caught.value.attempts == 1
        assert sites.hits[chart_path("ZZZZ")] == 1
        assert sites.hits[quote_path("ZZZZ")] == 0


def test_worker_404_without_not_found_code_falls_back_to_the_quote_page(sites: FakeSites, http: HttpClient) -> None:
    sites.script(chart_path("AAPL"), Fault(404, b"<html>Oops, something went wrong</html>"))
    record = price_worker(http, sites).get_price("AAPL")
    assert record["price"] == price_for("AAPL")
    assert record["currency"] is None
    assert sites.hits[quote_path("AAPL")] == 1


def test_worker_zero_price_falls_back_to_the_quote_page(http: HttpClient) -> None:
    with FakeSites(zero_price={"BF-B"}) as sites:
        record = price_worker(http, sites).get_price("BF.B")
        assert sites.hits[chart_path("BF-B")] == 1
        assert sites.hits[quote_path("BF-B")] == 1
    assert record == {
        "symbol": "BF.B",
        "price": price_for("BF-B"),
        "currency": None,
        "market_time": None,
        "extracted_time": EXTRACTED,
    }


def test_worker_zero_price_and_failing_quote_page_raises_item_error_naming_both(http: HttpClient) -> None:
    with FakeSites(zero_price={"XYZ"}) as sites:
        sites.script(quote_path("XYZ"), Fault(404, b"not found"))
        with pytest.raises(ItemError) as caught:
            price_worker(http, sites).get_price("XYZ")
        assert sites.hits[quote_path("XYZ")] == 1
    message = str(caught.value)
    assert type(caught.value) is ItemError  # not UnknownSymbol: the symbol may well exist
    assert caught.value.attempts == 2
    assert message.startswith("chart: ")
    assert "no usable price: 0.0" in message  # the chart's reason
    assert "quote page: HTTP 404" in message


def test_worker_chart_500_after_retries_falls_back_to_the_quote_page(sites: FakeSites, http: HttpClient) -> None:
    sites.script(chart_path("MSFT"), *[Fault(500, b"Internal Server Error")] * (FAST.retries + 1))
    record = price_worker(http, sites).get_price("MSFT")
    assert sites.hits[chart_path("MSFT")] == FAST.retries + 1
    assert sites.hits[quote_path("MSFT")] == 1
    assert record == {
        "symbol": "MSFT",
        "price": price_for("MSFT"),
        "currency": None,
        "market_time": None,
        "extracted_time": EXTRACTED,
    }


def test_worker_chart_500_once_is_retried_without_fallback(sites: FakeSites, http: HttpClient) -> None:
    sites.script(chart_path("MSFT"), Fault(500))
    record = price_worker(http, sites).get_price("MSFT")
    assert sites.hits[chart_path("MSFT")] == 2
    assert sites.hits[quote_path("MSFT")] == 0
    assert record["currency"] == "USD" and record["price"] == price_for("MSFT")


def test_worker_chart_500_and_quote_500_raises_item_error(sites: FakeSites, http: HttpClient) -> None:
    tries = FAST.retries + 1
    sites.script(chart_path("MSFT"), *[Fault(500)] * tries)
    sites.script(quote_path("MSFT"), *[Fault(503)] * tries)
    with pytest.raises(ItemError, match=r"^chart: HTTP 500; quote page: HTTP 503$") as caught:
        price_worker(http, sites).get_price("MSFT")
    assert caught.value.attempts == 2 * tries


def test_worker_chart_body_not_json_falls_back_to_the_quote_page(sites: FakeSites, http: HttpClient) -> None:
    sites.script(chart_path("AAPL"), Fault(200, b"<html>consent.yahoo.com</html>"))
    record = price_worker(http, sites).get_price("AAPL")
    assert record["price"] == price_for("AAPL") and record["currency"] is None
    assert sites.hits[quote_path("AAPL")] == 1


def test_worker_chart_connection_dropped_falls_back_to_the_quote_page(sites: FakeSites, http: HttpClient) -> None:
    sites.script(chart_path("AAPL"), *[Fault(action="close")] * (FAST.retries + 1))
    record = price_worker(http, sites).get_price("AAPL")
    assert sites.hits[chart_path("AAPL")] == FAST.retries + 1
    assert record["price"] == price_for("AAPL") and record["currency"] is None


def test_worker_chart_error_that_is_not_an_object_falls_back_to_the_quote_page(
    sites: FakeSites, http: HttpClient
) -> None:
    sites.script(chart_path("AAPL"), Fault(200, b'{"chart": {"result": null, "error": "Too Many Requests"}}'))
    record = price_worker(http, sites).get_price("AAPL")
    assert record["price"] == price_for("AAPL") and record["currency"] is None


def test_worker_refuses_a_chart_for_another_symbol_and_takes_the_quote_page(sites: FakeSites, http: HttpClient) -> None:
    sites.always(chart_path("MSFT"), Fault(200, chart_body("AAPL", price_for("AAPL"))))
    record = price_worker(http, sites).get_price("MSFT")
    assert record["price"] == price_for("MSFT") != price_for("AAPL")
    assert record["currency"] is None
    assert sites.hits[quote_path("MSFT")] == 1


def test_worker_with_a_fixed_url_stores_no_row_of_another_symbols_price(sites: FakeSites, http: HttpClient) -> None:
    # The bug of issue 8: a chart_url without {symbol} answers with AAPL's chart for every symbol.
    worker = YahooFinancePriceWorker(
        http, chart_url=sites.url(chart_path("AAPL")), quote_url=sites.url(quote_path("AAPL"))
    )
    assert worker.get_price("AAPL")["price"] == price_for("AAPL")
    with pytest.raises(ItemError) as caught:
        worker.get_price("MSFT")
    assert str(caught.value) == (
        "chart: the chart is for 'AAPL', not 'MSFT': refused; "
        "quote page: the quote page is for 'AAPL', not 'MSFT': refused"
    )
    assert caught.value.attempts == 2


# --- the stage: process(), breakers per endpoint, the item's deadline ----------------------------------


def scheduler(sites: FakeSites, cls=YahooFinancePriceScheduler, *, instances: int = 1, **params):
    """A stage instance in a StubGroup, pointed at `sites`, with fast retries."""
    params = {"retries": 1, "backoff_s": 0.01, "connect_timeout_s": 1, "read_timeout_s": 1, **params}
    return cls(
        group=StubGroup("YahooFinanceWorker", instances=instances),
        chart_url=sites.chart_url,
        quote_url=sites.quote_url,
        **params,
    )


@pytest.fixture
def stages():
    """Makes stages (as `scheduler` does) and closes their groups' clients afterwards."""
    made: list[YahooFinancePriceScheduler] = []

    def make(*args, **kwargs):
        made.append(scheduler(*args, **kwargs))
        return made[-1]

    yield make
    for stage in made:
        stage.group.close()


def test_process_returns_one_record(sites: FakeSites, stages) -> None:
    record = stages(sites).process("BRK.B")
    assert isinstance(record, dict)
    assert (record["symbol"], record["price"], record["currency"]) == ("BRK.B", price_for("BRK-B"), "USD")


def test_an_open_chart_breaker_sends_items_straight_to_the_quote_page(sites: FakeSites, stages) -> None:
    stage = stages(sites, retries=0, breaker_failures=3)
    sites.always("/v8/finance/chart/", Fault(503, b"{}"))
    symbols = ["MMM", "AOS", "ABT", "ABBV", "ACN", "ADBE"]
    records = [stage.process(symbol) for symbol in symbols]
    assert [r["price"] for r in records] == [price_for(s) for s in symbols]
    assert {r["currency"] for r in records} == {None}
    assert [sites.hits[chart_path(s)] for s in symbols] == [1, 1, 1, 0, 0, 0]  # quote successes reset nothing
    assert [sites.hits[quote_path(s)] for s in symbols] == [1] * 6


def test_after_the_cooldown_one_probe_tries_the_chart_while_the_others_fall_back(sites: FakeSites, stages) -> None:
    clock = [100.0]
    stage = stages(sites, instances=2, retries=0, breaker_failures=1, breaker_cooldown_s=30, read_timeout_s=5)
    settings = stage.http_settings
    stage.group.resources["http"] = HttpClient(settings, policy=HttpPolicy(settings, clock=lambda: clock[0]))
    sites.script(chart_path("MMM"), Fault(503, b"{}"))
    assert stage.process("MMM")["currency"] is None  # the 503 opens the chart's circuit
    assert stage.process("AOS")["currency"] is None and sites.hits[chart_path("AOS")] == 0
    clock[0] += 30
    sites.script(chart_path("ABT"), Fault(200, chart_body("ABT", price_for("ABT")), delay_s=1.0))
    results: list[dict] = []
    probe = threading.Thread(target=lambda: results.append(stage.process("ABT")), name="probe")
    probe.start()
    deadline = time.monotonic() + 5
    while not sites.hits[chart_path("ABT")] and time.monotonic() < deadline:  # the probe's request has arrived
        time.sleep(0.01)
    assert sites.hits[chart_path("ABT")] == 1
    others = [stage.process(symbol) for symbol in ("ABBV", "ACN")]  # while the probe is out
    probe.join(5)
    assert not probe.is_alive()
    assert results[0]["currency"] == "USD"  # the probe's own answer, from the chart
    assert [sites.hits[chart_path(s)] for s in ("ABBV", "ACN")] == [0, 0]
    assert {r["currency"] for r in others} == {None}
    assert stage.process("ADBE")["currency"] == "USD"  # the probe succeeded: the circuit is closed
    assert sites.hits[chart_path("ADBE")] == 1


def test_a_hanging_chart_leaves_the_quote_page_time_within_the_item_deadline(sites: FakeSites, stages) -> None:
    stage = stages(sites, retries=3, item_deadline_s=3, connect_timeout_s=1, read_timeout_s=1)
    sites.always(chart_path("MMM"), Fault(action="hang"))
    started = time.monotonic()
    record = stage.process("MMM")
    took_s = time.monotonic() - started
    assert record["price"] == price_for("MMM") and record["currency"] is None
    # The chart may use 3 - (1 + 1) s... but at least half the deadline, 1.5 s: one full try and one cut short.
    assert sites.hits[chart_path("MMM")] == 2
    assert 1.4 <= took_s < 2.5, f"took {took_s:.2f}s"


def test_an_item_never_outlasts_its_deadline(sites: FakeSites, stages) -> None:
    stage = stages(sites, retries=5, item_deadline_s=2, connect_timeout_s=1, read_timeout_s=1)
    sites.always(chart_path("MMM"), Fault(action="hang"))
    sites.always(quote_path("MMM"), Fault(action="hang"))
    started = time.monotonic()
    with pytest.raises(ItemError, match=r"^chart: .*deadline.*; quote page: .*deadline"):
        stage.process("MMM")
    assert time.monotonic() - started < 2.3
