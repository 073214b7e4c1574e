"""The asyncio client and the async Yahoo stage against a real server on 127.0.0.1, each test in asyncio.run()."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pg_cluster import free_port
from sites import MARKET_TIME, SP500_PAGE, FakeSites, Fault, StubGroup, chart_body, price_for

from core.http.aiohttp_client import AsyncHttpClient
from core.http.client import BodyTooLarge, CircuitOpen, FetchError, HttpSettings, Page, Stopped
from workers.base import ItemError
from workers.wiki_worker import parse_constituents
from workers.yahoo_finance_worker import UnknownSymbol, YahooFinancePriceAsyncScheduler
from workers.yahoo_pages import yahoo_symbol

FAST = HttpSettings(
    user_agent="aiohttp-tests", connect_timeout_s=1, read_timeout_s=1, retries=1, backoff_s=0.01, pool_size=4
)
CHART, QUOTE = "/v8/finance/chart/", "/quote/"
SYMBOLS = parse_constituents(SP500_PAGE.read_bytes())


def stage(
    sites: FakeSites, *, instances: int = 1, group: StubGroup | None = None, **params: Any
) -> YahooFinancePriceAsyncScheduler:
    """An async stage instance pointed at `sites`, with fast retries."""
    params = {"retries": 1, "backoff_s": 0.01, "connect_timeout_s": 1, "read_timeout_s": 1, **params}
    group = group or StubGroup("YahooFinanceWorker", instances=instances)
    return YahooFinancePriceAsyncScheduler(group=group, chart_url=sites.chart_url, quote_url=sites.quote_url, **params)


def run(worker: YahooFinancePriceAsyncScheduler, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run `body` in a fresh event loop, then close the group's aiohttp session there (as the runner does)."""

    async def main() -> Any:
        try:
            return await body()
        finally:
            await worker.aio_http.aclose()

    return asyncio.run(main())


# --- the async Yahoo stage -------------------------------------------------------------------------


def test_instances_share_one_session_and_store_every_price(sites: FakeSites) -> None:
    group = StubGroup("YahooFinanceWorker", instances=4)
    workers = [stage(sites, group=group, index=index) for index in range(4)]
    symbols = SYMBOLS[:60]

    async def instance(worker: YahooFinancePriceAsyncScheduler, mine: list[str]) -> list[dict]:
        return [await worker.process(symbol) for symbol in mine]

    async def body() -> list[list[dict]]:
        results = await asyncio.gather(*(instance(w, symbols[i::4]) for i, w in enumerate(workers)))
        assert workers[0].aio_http is workers[3].aio_http
        assert workers[0].aio_http._session.connector.limit == 4  # sized to the instances
        return results

    results = run(workers[0], body)
    records = {record["symbol"]: record for batch in results for record in batch}
    assert sorted(records) == sorted(symbols)
    for symbol, record in records.items():
        assert record["price"] == price_for(yahoo_symbol(symbol)) and record["currency"] == "USD"
        assert record["market_time"] == datetime.fromtimestamp(MARKET_TIME, UTC)
    assert sites.requests_since(0, (QUOTE,)) == []
    assert sites.user_agents[CHART + "MMM"] == YahooFinancePriceAsyncScheduler.DEFAULT_USER_AGENT


def test_not_found_is_not_retried(sites: FakeSites) -> None:
    sites.unknown.add("ZZZZ")
    worker = stage(sites, retries=3)
    with pytest.raises(UnknownSymbol, match="ZZZZ") as caught:
        run(worker, lambda: worker.process("ZZZZ"))
    assert caught.value.attempts == 1
    assert (sites.hits[CHART + "ZZZZ"], sites.hits[QUOTE + "ZZZZ"]) == (1, 0)


def test_a_failing_chart_falls_back_to_the_quote_page(sites: FakeSites) -> None:
    sites.always(CHART + "MSFT", Fault(500))
    worker = stage(sites)
    record = run(worker, lambda: worker.process("MSFT"))
    assert (record["price"], record["currency"]) == (price_for("MSFT"), None)
    assert (sites.hits[CHART + "MSFT"], sites.hits[QUOTE + "MSFT"]) == (2, 1)


def test_a_chart_for_another_symbol_is_refused(sites: FakeSites) -> None:
    sites.always(CHART + "MSFT", Fault(200, chart_body("AAPL", price_for("AAPL"))))
    worker = stage(sites)
    record = run(worker, lambda: worker.process("MSFT"))
    assert (record["price"], record["currency"]) == (price_for("MSFT"), None)


def test_another_symbols_chart_and_quote_page_store_nothing(sites: FakeSites) -> None:
    worker = YahooFinancePriceAsyncScheduler(
        group=StubGroup(), chart_url=sites.url(CHART + "AAPL"), quote_url=sites.url(QUOTE + "AAPL")
    )
    with pytest.raises(
        ItemError,
        match="chart: the chart is for 'AAPL', not 'MSFT'.*quote page: the quote page is for 'AAPL', not 'MSFT'",
    ):
        run(worker, lambda: worker.process("MSFT"))


@pytest.mark.parametrize("action", ["cut", "close"])
def test_a_broken_answer_is_retried(sites: FakeSites, action: str) -> None:
    sites.script(CHART + "AAPL", Fault(200, chart_body("AAPL", price_for("AAPL")), action=action))
    worker = stage(sites)
    record = run(worker, lambda: worker.process("AAPL"))
    assert record["currency"] == "USD" and sites.hits[CHART + "AAPL"] == 2


def test_a_trickling_body_is_cut_off_at_read_timeout_s(sites: FakeSites) -> None:
    sites.always(CHART + "AAPL", Fault(200, chart_body("AAPL", 1.0), action="trickle", interval_s=0.2))
    worker = stage(sites, retries=0)
    started = time.monotonic()
    record = run(worker, lambda: worker.process("AAPL"))
    assert record["currency"] is None  # from the quote page
    assert time.monotonic() - started < FAST.read_timeout_s + 0.5


def test_a_hanging_chart_leaves_the_quote_page_time_within_the_item_deadline(sites: FakeSites) -> None:
    sites.always(CHART + "MMM", Fault(action="hang"))
    worker = stage(sites, retries=3, item_deadline_s=3)
    started = time.monotonic()
    record = run(worker, lambda: worker.process("MMM"))
    took_s = time.monotonic() - started
    assert record["price"] == price_for("MMM") and record["currency"] is None
    assert sites.hits[CHART + "MMM"] == 2  # a full try, then one cut to the chart's share of the deadline
    assert 1.4 <= took_s < 2.5, f"took {took_s:.2f}s"


def test_short_retry_after_pauses_the_endpoint_for_every_instance(sites: FakeSites) -> None:
    group = StubGroup("YahooFinanceWorker", instances=2)
    first, second = stage(sites, group=group), stage(sites, group=group, index=1)
    sites.script(CHART + "MMM", Fault(429, b"{}", headers={"Retry-After": "1"}))

    async def body() -> list[dict]:
        chart = first.aio_http.policy.endpoint("chart")

        async def second_after_the_429() -> dict:
            give_up = time.monotonic() + 5
            while chart.next_start_s <= time.monotonic() < give_up:  # until the 429 has put the pause on
                await asyncio.sleep(0.01)
            return await second.process("AOS")

        return await asyncio.gather(first.process("MMM"), second_after_the_429())

    records = run(first, body)
    assert [r["currency"] for r in records] == ["USD", "USD"]
    asked, retried = sites.times(CHART + "MMM")
    (other,) = sites.times(CHART + "AOS")
    assert retried - asked >= 0.95 and other - asked >= 0.95  # both waited out the pause


def test_long_retry_after_opens_only_the_chart_endpoint(sites: FakeSites) -> None:
    sites.script(CHART + "MMM", Fault(429, b"{}", headers={"Retry-After": "3600"}))
    worker = stage(sites, retry_after_max_s=2)

    async def body() -> list[dict]:
        return [await worker.process(symbol) for symbol in ("MMM", "AOS")]

    records = run(worker, body)
    assert [r["currency"] for r in records] == [None, None]
    assert (sites.hits[CHART + "MMM"], sites.hits[CHART + "AOS"]) == (1, 0)
    assert (sites.hits[QUOTE + "MMM"], sites.hits[QUOTE + "AOS"]) == (1, 1)


def test_an_open_chart_breaker_sends_items_straight_to_the_quote_page(sites: FakeSites) -> None:
    sites.always(CHART, Fault(503, b"{}"))
    worker = stage(sites, retries=0, breaker_failures=3)
    symbols = SYMBOLS[:6]

    async def body() -> list[dict]:
        return [await worker.process(symbol) for symbol in symbols]

    records = run(worker, body)
    assert [r["price"] for r in records] == [price_for(yahoo_symbol(s)) for s in symbols]
    assert [sites.hits[CHART + yahoo_symbol(s)] for s in symbols] == [1, 1, 1, 0, 0, 0]


# --- the client itself ------------------------------------------------------------------------------


def client_run(
    settings: HttpSettings, body: Callable[[AsyncHttpClient], Awaitable[Any]], stop: threading.Event | None = None
) -> Any:
    client = AsyncHttpClient(settings, stop=stop)

    async def main() -> Any:
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_connection_refused_raises_fetch_error_after_every_try() -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    with pytest.raises(FetchError, match="ClientConnectorError") as caught:
        client_run(FAST, lambda client: client.get(url))
    assert caught.value.attempts == FAST.retries + 1


def test_a_hanging_server_costs_each_try_its_read_timeout(sites: FakeSites) -> None:
    sites.always("/slow", Fault(action="hang"))
    started = time.monotonic()
    with pytest.raises(FetchError, match="Timeout") as caught:
        client_run(FAST, lambda client: client.get(sites.url("/slow")))
    assert caught.value.attempts == 2
    assert 2 * FAST.read_timeout_s - 0.1 <= time.monotonic() - started < 2 * FAST.read_timeout_s + 1


def test_503_on_every_try_hands_back_the_last_answer_and_opens_the_breaker(sites: FakeSites) -> None:
    sites.always("/busy", Fault(503, b"busy"))
    settings = HttpSettings(**{**FAST.__dict__, "breaker_failures": 2})

    async def body(client: AsyncHttpClient) -> Any:
        pages = [await client.get(sites.url("/busy"), endpoint="api") for _ in range(2)]
        with pytest.raises(CircuitOpen, match="not sent to api: 2 requests in a row failed"):
            await client.get(sites.url("/busy"), endpoint="api")
        return pages

    first, second = client_run(settings, body)
    assert (first.status, first.body, first.attempts) == (503, b"busy", 2)  # its retry counts as the same failure
    assert second.attempts == 1  # its first try opened the breaker: no retry into it
    assert sites.hits["/busy"] == 3


def test_stop_ends_a_backoff_at_once(sites: FakeSites) -> None:
    stop = threading.Event()
    sites.script("/busy", Fault(503))
    settings = HttpSettings(**{**FAST.__dict__, "backoff_s": 30})

    async def body(client: AsyncHttpClient) -> None:
        asyncio.get_running_loop().call_later(0.3, stop.set)
        await client.get(sites.url("/busy"))

    started = time.monotonic()
    with pytest.raises(Stopped) as caught:
        client_run(settings, body, stop)
    assert time.monotonic() - started < 2
    assert caught.value.attempts == 1


def test_close_from_outside_the_loop_closes_an_open_session(sites: FakeSites) -> None:
    client = AsyncHttpClient(FAST)
    loop = asyncio.new_event_loop()
    try:
        page = loop.run_until_complete(client.get(sites.url(QUOTE + "MMM")))
        session = client._session
        assert page.status == 200 and not session.closed
        client.close()  # the loop is not running: close() runs the closing on it
        assert session.closed
        client.close()  # and again: a no-op
    finally:
        loop.close()


def test_close_after_aclose_is_a_no_op(sites: FakeSites) -> None:
    client = AsyncHttpClient(FAST)

    async def main() -> None:
        await client.get(sites.url(QUOTE + "MMM"))
        await client.aclose()

    asyncio.run(main())
    client.close()
    assert client._session is None


def test_tries_in_flight_share_one_deadline_timer(sites: FakeSites) -> None:
    """Each try is bounded by its deadline, then its body by its budget; the client keeps those with one
    timer for every try in flight (core/http/deadlines.py), not one or two each (asyncio.timeout_at)."""
    sites.latency_s = 1.0
    settings = HttpSettings(user_agent="aiohttp-tests", connect_timeout_s=5, read_timeout_s=5, retries=0, pool_size=20)

    async def body(client: AsyncHttpClient) -> tuple[int, list[Page]]:
        loop = asyncio.get_running_loop()
        gets = [asyncio.ensure_future(client.get(sites.url(f"{CHART}S{n}"))) for n in range(20)]
        give_up = loop.time() + 10
        while len(sites.requests) < 20 and loop.time() < give_up:  # every request has reached the server
            await asyncio.sleep(0.01)
        deadline_timers = sum(
            1
            for handle in loop._scheduled  # noqa: SLF001
            if not handle.cancelled()
            and getattr(handle._callback, "__qualname__", "")  # noqa: SLF001
            in ("Timeout._on_timeout", "Deadlines._check")
        )
        return deadline_timers, await asyncio.gather(*gets)

    timers, pages = client_run(settings, body)
    assert len(sites.requests) == 20 and [page.status for page in pages] == [200] * 20
    assert timers == 1


# --- max_body_bytes -------------------------------------------------------------------------------------------

CAP = 1024 * 1024
PAGE = "/page"


def fetch(sites: FakeSites, client: AsyncHttpClient, times: int = 1) -> list[Page]:
    """`times` GETs of PAGE in a fresh loop, one after the other; the client closed there afterwards."""

    async def main() -> list[Page]:
        try:
            return [await client.get(sites.url(PAGE)) for _ in range(times)]
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_a_chunked_body_of_max_body_bytes_is_read_and_one_byte_more_is_not(sites: FakeSites) -> None:
    sites.script(PAGE, Fault(action="endless", limit_bytes=CAP))
    assert len(fetch(sites, AsyncHttpClient(replace(FAST, max_body_bytes=CAP)))[0].body) == CAP

    sites.script(PAGE, Fault(action="endless", limit_bytes=CAP + 64 * 1024))
    with pytest.raises(BodyTooLarge) as caught:
        fetch(sites, AsyncHttpClient(replace(FAST, max_body_bytes=CAP)))
    assert str(caught.value) == (
        f"GET {sites.url(PAGE)}: the body is larger than max_body_bytes={CAP} (more than {CAP} bytes arrived): "
        "not read on, and not retried (the same URL sends the same body)"
    )
    assert caught.value.attempts == 1 and sites.hits[PAGE] == 2


def test_a_content_length_past_max_body_bytes_fails_at_once_without_a_retry(sites: FakeSites) -> None:
    sites.always(PAGE, Fault(action="oversize", declared_length=CAP + 1, body=b"<p>"))
    started = time.monotonic()
    with pytest.raises(BodyTooLarge, match=rf"larger than max_body_bytes={CAP} \(Content-Length: {CAP + 1}\)"):
        fetch(sites, AsyncHttpClient(replace(FAST, max_body_bytes=CAP)))
    assert time.monotonic() - started < FAST.read_timeout_s / 2  # the body it promised was never waited for
    assert sites.hits[PAGE] == 1


def test_a_body_of_max_body_bytes_with_its_content_length_is_read(sites: FakeSites) -> None:
    sites.script(PAGE, Fault(200, b"x" * CAP))
    assert len(fetch(sites, AsyncHttpClient(replace(FAST, max_body_bytes=CAP)))[0].body) == CAP
