"""Middle stage: each symbol's price from Yahoo Finance (the chart API, the quote page as fallback).

The lookup itself does no I/O (`YahooFinancePriceWorker.steps` yields the requests it wants and takes their
answers), so the threaded stage and the asyncio stage run the same lookup on their own clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from core.http.policy import Page, Stopped
from workers.base import ItemError
from workers.http_worker import AsyncHttpWorker, HttpWorker
from workers.yahoo_pages import CHART_URL, QUOTE_URL, parse_chart, parse_quote_page, yahoo_symbol
from workers.yahoo_params import YahooParams
from workers.yahoo_session import (
    SESSION,
    CrumbRefused,
    Want,
    YahooSession,
    take,
    take_async,
)

if TYPE_CHECKING:
    from core.http.aiohttp_client import AsyncHttpClient
    from core.http.client import HttpClient

#: The endpoint names the group's pacers and breakers are kept under.
CHART, QUOTE = "chart", "quote"


class UnknownSymbol(ItemError):
    """Yahoo says the symbol does not exist (HTTP 404, chart.error.code "Not Found"); not retried."""


@dataclass(frozen=True)
class Fetch:
    """A GET the lookup wants made: its URL, the endpoint it counts against, its deadline and headers."""

    url: str
    endpoint: str
    deadline: float
    headers: dict[str, str] = field(default_factory=dict)
    secret: bool = False  # as Want.secret


class YahooFinancePriceWorker:
    """Looks up one symbol's price: the chart API first, the quote page when the API request fails.

    `http` is the group's HttpClient (for get_price) or AsyncHttpClient (for get_price_async).
    """

    def __init__(
        self,
        http: HttpClient | AsyncHttpClient,
        *,
        chart_url: str = CHART_URL,
        quote_url: str = QUOTE_URL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: YahooSession | None = None,
    ) -> None:
        self.http = http
        self.chart_url = chart_url
        self.quote_url = quote_url
        self.clock = clock
        self.session = session

    def get_price(self, symbol: str) -> dict[str, Any]:
        """One record: symbol (as Wikipedia writes it), price, currency, market_time, extracted_time (UTC)."""
        self._take(None)
        try:
            return self._run(self.steps(symbol, self.http.policy.deadline()))
        except CrumbRefused as refused:  # once per item: a crumb refused again goes to the quote page
            self._take(refused.generation)
            return self._run(self.steps(symbol, self.http.policy.deadline(), refusable=False))

    async def get_price_async(self, symbol: str) -> dict[str, Any]:
        """get_price on the asyncio client."""
        await self._take_async(None)
        try:
            return await self._run_async(self.steps(symbol, self.http.policy.deadline()))
        except CrumbRefused as refused:
            await self._take_async(refused.generation)
            return await self._run_async(self.steps(symbol, self.http.policy.deadline(), refusable=False))

    def _run(self, steps: Generator[Fetch, Page, Any]) -> Any:
        """Drive an I/O-free lookup on the blocking client."""
        from core.http.client import page_of

        try:
            fetch = next(steps)
            while True:
                try:
                    response = cast("HttpClient", self.http).get(
                        fetch.url,
                        endpoint=fetch.endpoint,
                        deadline=fetch.deadline,
                        headers=fetch.headers or None,
                        secret=fetch.secret,
                    )
                except ItemError as exc:
                    fetch = steps.throw(exc)
                else:
                    fetch = steps.send(page_of(response))
        except StopIteration as done:
            return done.value

    async def _run_async(self, steps: Generator[Fetch, Page, Any]) -> Any:
        """Drive an I/O-free lookup on the asyncio client."""
        try:
            fetch = next(steps)
            while True:
                try:
                    page = await cast("AsyncHttpClient", self.http).get(
                        fetch.url,
                        endpoint=fetch.endpoint,
                        deadline=fetch.deadline,
                        headers=fetch.headers or None,
                        secret=fetch.secret,
                    )
                except ItemError as exc:
                    fetch = steps.throw(exc)
                else:
                    fetch = steps.send(page)
        except StopIteration as done:
            return done.value

    def _take(self, refused: int | None) -> None:
        """Take (or after `refused`, retake) the group's session if that is due, one instance at a time."""
        if self.session is not None:
            take(self.session, refused, lambda want: self._run(fetches(want, self.http.policy.deadline())))

    async def _take_async(self, refused: int | None) -> None:
        if self.session is not None:
            await take_async(
                self.session, refused, lambda want: self._run_async(fetches(want, self.http.policy.deadline()))
            )

    def steps(self, symbol: str, deadline: float, *, refusable: bool = True) -> Generator[Fetch, Page, dict[str, Any]]:
        """The lookup without I/O: yields each Fetch, is sent its Page (or thrown its ItemError), returns the record.
        With a session, a chart answer of 401 raises CrumbRefused while `refusable` (the driver retakes it once)."""
        ticker = yahoo_symbol(symbol)
        path = quote(ticker)
        session = self.session
        url = self.chart_url.format(symbol=path)
        try:
            headers, generation = (session.headers(), session.generation) if session else ({}, 0)
            chart_url = session.chart_url(url) if session else url
            page = yield Fetch(chart_url, CHART, self._chart_deadline(deadline), headers)
            if page.status == 401 and headers and refusable:
                raise CrumbRefused("the chart refused the crumb (HTTP 401)", generation=generation)
            if page.status == 200 and headers and session is not None:
                session.worked(generation)
            price, currency, market_time = _from_chart(page, ticker)
        except (UnknownSymbol, Stopped, CrumbRefused):
            raise
        except (ItemError, ValueError) as chart_error:  # ValueError: a body that is not JSON
            try:
                page = yield Fetch(self.quote_url.format(symbol=path), QUOTE, deadline)
                price, currency, market_time = _from_quote_page(page, ticker), None, None
            except Stopped:
                raise
            except ItemError as page_error:
                raise ItemError(
                    f"chart: {_reason(chart_error)}; quote page: {_reason(page_error)}",
                    attempts=_attempts(chart_error) + _attempts(page_error),
                ) from page_error
        return {
            "symbol": symbol,
            "price": price,
            "currency": currency,
            "market_time": market_time,
            "extracted_time": self.clock(),
        }

    def _chart_deadline(self, deadline: float) -> float:
        """The chart may use the item's time but for one quote-page try (connect + read timeout), or half of it."""
        settings = self.http.policy.settings
        return deadline - min(settings.connect_timeout_s + settings.read_timeout_s, settings.item_deadline_s / 2)


def fetches(taking: Generator[Want, Page | Exception, None], deadline: float) -> Generator[Fetch, Page, None]:
    """The session's GETs as a lookup's Fetches : a failed GET is sent in as its
    error, never raised."""
    try:
        want = next(taking)
        while True:
            try:
                answer: Page | Exception = yield Fetch(want.url, SESSION, deadline, want.headers, want.secret)
            except ItemError as exc:
                answer = exc
            want = taking.send(answer)
    except StopIteration:
        return


def _from_chart(page: Page, ticker: str) -> tuple[float, str, datetime | None]:
    if page.status == 404 and _error_code(page.body) == "Not Found":
        raise UnknownSymbol(f"Yahoo does not know {ticker!r} (HTTP 404 Not Found)", attempts=page.attempts)
    if page.status != 200:
        raise ItemError(f"HTTP {page.status}", attempts=page.attempts)
    try:
        return parse_chart(json.loads(page.body), ticker)
    except (ItemError, ValueError) as exc:
        exc.attempts = page.attempts  # type: ignore[union-attr]  # the dead letter's `attempts`
        raise


def _from_quote_page(page: Page, ticker: str) -> float:
    if page.status != 200:
        raise ItemError(f"HTTP {page.status}", attempts=page.attempts)
    try:
        return parse_quote_page(page.body, ticker)
    except ItemError as exc:
        exc.attempts = page.attempts
        raise


class YahooFinancePriceScheduler(YahooParams, HttpWorker):
    """For each symbol, emits one price record. Safe to scale: its instances share rate limits and breakers."""

    _prices: YahooFinancePriceWorker | None = None

    def process(self, symbol: str) -> dict[str, Any]:
        """The symbol's price record (one output); an ItemError when neither page gives a price for it."""
        if self._prices is None:
            self._prices = YahooFinancePriceWorker(
                self.http, chart_url=self.chart_url, quote_url=self.quote_url, session=self.yahoo_session()
            )
        return self._prices.get_price(symbol)


class YahooFinancePriceAsyncScheduler(YahooParams, AsyncHttpWorker):
    """YahooFinancePriceScheduler as a coroutine on aiohttp: the same params, policy, lookup and records."""

    _prices: YahooFinancePriceWorker | None = None

    async def process(self, symbol: str) -> dict[str, Any]:
        """The symbol's price record (one output); an ItemError when neither page gives a price for it."""
        if self._prices is None:
            self._prices = YahooFinancePriceWorker(
                self.aio_http, chart_url=self.chart_url, quote_url=self.quote_url, session=self.yahoo_session()
            )
        return await self._prices.get_price_async(symbol)


def _error_code(body: bytes) -> str | None:
    try:
        return ((json.loads(body).get("chart") or {}).get("error") or {}).get("code")
    except (ValueError, AttributeError):
        return None


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ItemError) else f"{type(exc).__name__}: {exc}"


def _attempts(exc: BaseException) -> int:
    return getattr(exc, "attempts", 1)
