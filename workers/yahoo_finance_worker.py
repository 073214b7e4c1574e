"""Middle stage: each symbol's price from Yahoo Finance (the chart API, the quote page as fallback).

The lookup itself does no I/O (`YahooFinancePriceWorker.steps` yields the requests it wants and takes their
answers), so the threaded stage and the asyncio stage run the same lookup on their own clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from core.http.policy import Page, Stopped
from workers.base import ItemError
from workers.http_worker import AsyncHttpWorker, HttpWorker
from workers.yahoo_pages import parse_chart, parse_quote_page, template_problem, yahoo_symbol

if TYPE_CHECKING:
    from core.http.aiohttp_client import AsyncHttpClient
    from core.http.client import HttpClient

CHART_URL = "https://query1.finance.yahoo.com/v8/finance/chart/{symbol}"
QUOTE_URL = "https://finance.yahoo.com/quote/{symbol}"
#: The endpoint names the group's pacers and breakers are kept under.
CHART, QUOTE = "chart", "quote"


class UnknownSymbol(ItemError):
    """Yahoo says the symbol does not exist (HTTP 404, chart.error.code "Not Found"); not retried."""


@dataclass(frozen=True)
class Fetch:
    """A GET the lookup wants made: its URL, the endpoint it counts against, and its deadline."""

    url: str
    endpoint: str
    deadline: float


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
    ) -> None:
        self.http = http
        self.chart_url = chart_url
        self.quote_url = quote_url
        self.clock = clock

    def get_price(self, symbol: str) -> dict[str, Any]:
        """One record: symbol (as Wikipedia writes it), price, currency, market_time, extracted_time (UTC)."""
        from core.http.client import page_of

        steps = self.steps(symbol, self.http.policy.deadline())
        try:
            fetch = next(steps)
            while True:
                try:
                    response = cast("HttpClient", self.http).get(
                        fetch.url, endpoint=fetch.endpoint, deadline=fetch.deadline
                    )
                except ItemError as exc:
                    fetch = steps.throw(exc)
                else:
                    fetch = steps.send(page_of(response))
        except StopIteration as done:
            return done.value

    async def get_price_async(self, symbol: str) -> dict[str, Any]:
        """get_price on the asyncio client."""
        steps = self.steps(symbol, self.http.policy.deadline())
        try:
            fetch = next(steps)
            while True:
                try:
                    page = await cast("AsyncHttpClient", self.http).get(
                        fetch.url, endpoint=fetch.endpoint, deadline=fetch.deadline
                    )
                except ItemError as exc:
                    fetch = steps.throw(exc)
                else:
                    fetch = steps.send(page)
        except StopIteration as done:
            return done.value

    def steps(self, symbol: str, deadline: float) -> Generator[Fetch, Page, dict[str, Any]]:
        """The lookup without I/O: yields each Fetch, is sent its Page (or thrown its ItemError), returns the record."""
        ticker = yahoo_symbol(symbol)
        path = quote(ticker)
        try:
            page = yield Fetch(self.chart_url.format(symbol=path), CHART, self._chart_deadline(deadline))
            price, currency, market_time = _from_chart(page, ticker)
        except (UnknownSymbol, Stopped):
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


class _YahooParams:
    """What both Yahoo stages take and check: the two URL templates, and Yahoo's User-Agent."""

    USER_AGENT_ENV = "YAHOO_USER_AGENT"
    # Yahoo throttles library-default agents at once; a browser's agent is what its own pages send.
    DEFAULT_USER_AGENT = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
    )

    def __init__(self, *, chart_url: str = CHART_URL, quote_url: str = QUOTE_URL, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chart_url = chart_url
        self.quote_url = quote_url

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        """The HTTP params' problems, and each URL template that is not one with exactly {symbol}."""
        problems = list(super().check_params(params))  # type: ignore[misc]
        for key in ("chart_url", "quote_url"):
            value = params.get(key)
            problem = template_problem(value) if isinstance(value, str) else None
            if problem:
                problems.append((key, problem))
        return problems


class YahooFinancePriceScheduler(_YahooParams, HttpWorker):
    """For each symbol, emits one price record. Safe to scale: its instances share rate limits and breakers."""

    _prices: YahooFinancePriceWorker | None = None

    def process(self, symbol: str) -> dict[str, Any]:
        """The symbol's price record (one output); an ItemError when neither page gives a price for it."""
        if self._prices is None:
            self._prices = YahooFinancePriceWorker(self.http, chart_url=self.chart_url, quote_url=self.quote_url)
        return self._prices.get_price(symbol)


class YahooFinancePriceAsyncScheduler(_YahooParams, AsyncHttpWorker):
    """YahooFinancePriceScheduler as a coroutine on aiohttp: the same params, policy, lookup and records."""

    _prices: YahooFinancePriceWorker | None = None

    async def process(self, symbol: str) -> dict[str, Any]:
        """The symbol's price record (one output); an ItemError when neither page gives a price for it."""
        if self._prices is None:
            self._prices = YahooFinancePriceWorker(self.aio_http, chart_url=self.chart_url, quote_url=self.quote_url)
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
