"""Writes demo/sp500.demo.jsonl, the cassette `python main.py --offline demo/` runs the shipped job from.

The Wikipedia answer is the saved page beside this file (CC BY-SA 4.0, see demo/README.md). The Yahoo answers
are in the chart API's real format, with made-up prices (the same for a symbol each time this is run) and
"DEMO" where the exchange goes: demo prices, never market data. The cookie and the crumb are REDACTED, as
--record-http writes them. Run it again after changing the page: `python demo/make_cassette.py`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core.http import tape  # noqa: E402 - after the project is on the path
from workers.wiki_worker import parse_constituents  # noqa: E402
from workers.yahoo_pages import yahoo_symbol  # noqa: E402

PAGE = "wikipedia_sp500_2025-07-18.html"
WIKIPEDIA_URL = "https://en.wikipedia.org/wiki/List_of_S%26P_500_companies"
COOKIE_URL = "https://fc.yahoo.com"
CRUMB_URL = "https://query1.finance.yahoo.com/v1/test/getcrumb"
CHART_URL = "https://query1.finance.yahoo.com/v8/finance/chart/{symbol}"
MARKET_TIME = 1752868800  # 2025-07-18 20:00 UTC, the close of the day the page was saved
#: The project's pipeline file and the course's (docs/COURSE.md): the same job, the same requests.
PIPELINES = ["wiki_yahoo_scraper_pipeline", "wiki_yahoo_scrapper_pipeline"]
NOTE = "DEMO PRICES, made up by demo/make_cassette.py: not market data"


def demo_price(symbol: str) -> float:
    """A made-up price between 10 and 500, the same for a symbol every time."""
    digest = hashlib.sha256(symbol.encode()).digest()
    return round(10 + int.from_bytes(digest[:4], "big") / 2**32 * 490, 2)


def chart(symbol: str) -> dict:
    """A /v8/finance/chart answer in Yahoo's format, its price made up and said to be."""
    price = demo_price(symbol)
    meta = {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "DEMO",
        "fullExchangeName": "DEMO PRICES - NOT MARKET DATA",
        "instrumentType": "EQUITY",
        "regularMarketTime": MARKET_TIME,
        "gmtoffset": -14400,
        "timezone": "EDT",
        "exchangeTimezoneName": "America/New_York",
        "regularMarketPrice": price,
        "chartPreviousClose": price,
        "longName": f"{symbol} (demo price, not market data)",
        "priceHint": 2,
        "dataGranularity": "1d",
        "range": "1d",
    }
    quote = {"open": [price], "close": [price], "high": [price], "low": [price], "volume": [0]}
    return {
        "chart": {
            "result": [{"meta": meta, "timestamp": [MARKET_TIME], "indicators": {"quote": [quote]}}],
            "error": None,
        }
    }


def answer(url: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes = b"") -> dict:
    return tape.answer_line("GET", url, status, reason, headers, body)


def main() -> None:
    symbols = parse_constituents((HERE / PAGE).read_bytes())
    page = answer(WIKIPEDIA_URL, 200, "OK", [("Content-Type", "text/html; charset=UTF-8")])
    del page["body"]
    page["body_file"] = PAGE  # the saved page beside the cassette, not a copy inside it
    answers = [
        page,
        answer(COOKIE_URL, 404, "Not Found", [("Set-Cookie", "A3=REDACTED; Domain=.yahoo.com; Path=/; Secure")]),
        answer(CRUMB_URL, 200, "OK", [("Content-Type", "text/plain;charset=utf-8")], b"REDACTED"),
    ]
    for symbol in symbols:
        ticker = yahoo_symbol(symbol)
        body = json.dumps(chart(ticker), separators=(",", ":")).encode()
        answers.append(answer(CHART_URL.format(symbol=ticker), 200, "OK", [("Content-Type", "application/json")], body))
    head = tape.header(PIPELINES, "demo", started="2025-07-18T20:00:00+00:00", host="demo", note=NOTE)
    out = HERE / "sp500.demo.jsonl"
    tape.write_cassette(out, head, answers)
    print(f"{out}: {len(symbols)} symbols, {len(answers)} answers")


if __name__ == "__main__":
    main()
