"""Middle stage: each symbol's price from Yahoo Finance (the chart API, the quote page as fallback)."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

import requests
from bs4 import BeautifulSoup

from core.http import HttpClient
from workers.base import ItemError
from workers.http_worker import HttpWorker

CHART_URL = "https://query1.finance.yahoo.com/v8/finance/chart/{symbol}"
QUOTE_URL = "https://finance.yahoo.com/quote/{symbol}"


class UnknownSymbol(ItemError):
    """Yahoo says the symbol does not exist (HTTP 404, chart.error.code "Not Found"); not retried."""


def yahoo_symbol(symbol: str) -> str:
    """Wikipedia writes share classes with a dot (BRK.B), Yahoo with a dash (BRK-B)."""
    return symbol.replace(".", "-")


def parse_chart(payload: Any) -> tuple[float, str, datetime | None]:
    """(price, currency, market time) from a /v8/finance/chart body; ItemError when it holds none."""
    chart = payload.get("chart") if isinstance(payload, dict) else None
    if not isinstance(chart, dict):
        raise ItemError("chart body has no 'chart' object")
    error = chart.get("error")
    if isinstance(error, dict):
        raise ItemError(f"chart error: {error.get('code')}: {error.get('description')}")
    if error:
        raise ItemError(f"chart error: {error!r}")
    results = chart.get("result")
    first = results[0] if isinstance(results, list) and results else None
    meta = first.get("meta") if isinstance(first, dict) else None
    if not isinstance(meta, dict):
        raise ItemError("chart body has no result[0].meta")
    price = valid_price(meta.get("regularMarketPrice"))
    currency = meta.get("currency")
    if not currency:
        raise ItemError(f"chart gives price {price} with no currency; Yahoo does this for bad symbols")
    return price, str(currency), _utc(meta.get("regularMarketTime"))


def _utc(epoch_s: Any) -> datetime | None:
    """A Unix time as an aware UTC datetime; None when absent or not a plausible time."""
    if isinstance(epoch_s, bool) or not isinstance(epoch_s, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(epoch_s, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def valid_price(value: Any) -> float:
    """`value` as a positive finite float, else ItemError."""
    if isinstance(value, bool):
        raise ItemError(f"no usable price: {value!r}")
    try:
        price = float(str(value).replace(",", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ItemError(f"no usable price: {value!r}") from None
    if not math.isfinite(price) or price <= 0:
        raise ItemError(f"no usable price: {value!r}")
    return price


def parse_quote_page(html: str | bytes, symbol: str) -> float:
    """The price on a finance.yahoo.com quote page, in any of its markups since 2022."""
    soup = BeautifulSoup(html, "lxml")
    element = (
        soup.select_one('[data-testid="qsp-price"], [data-test="qsp-price"]')
        or soup.find("fin-streamer", attrs={"data-field": "regularMarketPrice", "data-symbol": symbol})
    )
    if element is None:
        raise ItemError("no price element on the quote page")
    return valid_price(element.get("value") or element.get("data-value") or element.get_text(strip=True))


class YahooFinancePriceWorker:
    """Looks up one symbol's price: the chart API first, the quote page when the API request fails."""

    def __init__(self, http: HttpClient, *, chart_url: str = CHART_URL, quote_url: str = QUOTE_URL,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.http = http
        self.chart_url = chart_url
        self.quote_url = quote_url
        self.clock = clock

    def get_price(self, symbol: str) -> dict[str, Any]:
        """One record: symbol (as Wikipedia writes it), price, currency, market_time, extracted_time (UTC)."""
        ticker = yahoo_symbol(symbol)
        try:
            price, currency, market_time = self._from_chart(ticker)
        except UnknownSymbol:
            raise
        except (ItemError, ValueError) as chart_error:  # ValueError: a body that is not JSON
            try:
                price, currency, market_time = self._from_quote_page(ticker), None, None
            except ItemError as page_error:
                raise ItemError(f"chart: {_reason(chart_error)}; quote page: {_reason(page_error)}",
                                attempts=_attempts(chart_error) + _attempts(page_error)) from page_error
        return {"symbol": symbol, "price": price, "currency": currency,
                "market_time": market_time, "extracted_time": self.clock()}

    def _from_chart(self, ticker: str) -> tuple[float, str, datetime | None]:
        response = self.http.get(self.chart_url.format(symbol=quote(ticker)))
        if response.status_code == 404 and _error_code(response) == "Not Found":
            raise UnknownSymbol(f"Yahoo does not know {ticker!r} (HTTP 404 Not Found)", attempts=response.attempts)
        if response.status_code != 200:
            raise ItemError(f"HTTP {response.status_code}", attempts=response.attempts)
        return parse_chart(response.json())

    def _from_quote_page(self, ticker: str) -> float:
        response = self.http.get(self.quote_url.format(symbol=quote(ticker)))
        if response.status_code != 200:
            raise ItemError(f"HTTP {response.status_code}", attempts=response.attempts)
        return parse_quote_page(response.content, ticker)


class YahooFinancePriceScheduler(HttpWorker):
    """For each symbol, emits one price record. Safe to scale: its instances share a rate limit."""

    USER_AGENT_ENV = "YAHOO_USER_AGENT"
    # Yahoo throttles library-default agents at once; a browser's agent is what its own pages send.
    DEFAULT_USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                          "Chrome/126.0 Safari/537.36")

    def __init__(self, *, chart_url: str = CHART_URL, quote_url: str = QUOTE_URL, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chart_url = chart_url
        self.quote_url = quote_url

    def setup(self) -> None:
        self.prices = YahooFinancePriceWorker(self.http, chart_url=self.chart_url, quote_url=self.quote_url)

    def process(self, symbol: str) -> list[dict[str, Any]]:
        return [self.prices.get_price(symbol)]


def _error_code(response: requests.Response) -> str | None:
    try:
        return ((response.json().get("chart") or {}).get("error") or {}).get("code")
    except (ValueError, AttributeError):
        return None


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ItemError) else f"{type(exc).__name__}: {exc}"


def _attempts(exc: BaseException) -> int:
    return getattr(exc, "attempts", 1)
