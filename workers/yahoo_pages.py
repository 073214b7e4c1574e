"""What Yahoo Finance answers, read: a symbol in Yahoo's form, the URL templates the stage accepts, and the price
(with currency and market time) in a /v8/finance/chart body or on a quote page. No I/O here."""

from __future__ import annotations

import math
import string
from datetime import UTC, datetime
from typing import Any

from workers.base import ItemError

CHART_URL = "https://query1.finance.yahoo.com/v8/finance/chart/{symbol}"
QUOTE_URL = "https://finance.yahoo.com/quote/{symbol}"


def yahoo_symbol(symbol: str) -> str:
    """Wikipedia writes share classes with a dot (BRK.B), Yahoo with a dash (BRK-B)."""
    return symbol.replace(".", "-")


def template_problem(template: str) -> str | None:
    """Why `template` is not a URL template whose only placeholder is {symbol}; None when it is one."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        return f"not a valid template ({exc}); the only placeholder allowed is {{symbol}}"
    others = sorted(
        {
            "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            for name, spec, conversion in fields
            if (name, spec, conversion) != ("symbol", "", None)
        }
    )
    if others:
        return f"has the placeholder(s) {', '.join(others)}; the only placeholder allowed is {{symbol}}"
    if not fields:
        return "has no {symbol} placeholder: every symbol would get the same page (another symbol's price)"
    return None


def parse_chart(payload: Any, ticker: str | None = None) -> tuple[float, str, datetime | None]:
    """(price, currency, market time) from a /v8/finance/chart body; ItemError when it holds none, or when it
    is for another symbol than `ticker` (Yahoo's form, compared case-insensitively)."""
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
    if ticker is not None and str(meta.get("symbol", "")).upper() != ticker.upper():
        raise ItemError(f"the chart is for {meta.get('symbol')!r}, not {ticker!r}: refused")
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
        return datetime.fromtimestamp(epoch_s, UTC)
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
    """The price on a finance.yahoo.com quote page, in any of its markups since 2022; ItemError when the
    price element says it is another symbol's (fin-streamer carries data-symbol; the plain span does not)."""
    from bs4 import BeautifulSoup  # here, not at the top: only the fallback needs it

    soup = BeautifulSoup(html, "lxml")
    element = soup.select_one('[data-testid="qsp-price"], [data-test="qsp-price"]') or soup.find(
        "fin-streamer", attrs={"data-field": "regularMarketPrice", "data-symbol": symbol}
    )
    if element is None:
        raise ItemError("no price element on the quote page")
    shown = element.get("data-symbol")
    if isinstance(shown, str) and shown.upper() != symbol.upper():
        raise ItemError(f"the quote page is for {shown!r}, not {symbol!r}: refused")
    return valid_price(element.get("value") or element.get("data-value") or element.get_text(strip=True))
