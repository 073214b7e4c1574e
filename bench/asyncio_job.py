"""The S&P 500 job written plainly with asyncio and aiohttp: the reference for bench/async_http.py.

    python bench/asyncio_job.py WIKI_URL CHART_URL CONCURRENCY DATABASE_URL

What a competent script would do, tuned like the pipeline's async stage: one ClientSession, a TCPConnector
with limit = limit_per_host = CONCURRENCY, the same timeouts (sock_connect 5 s, sock_read 20 s), CONCURRENCY
tasks taking symbols from one list; each chart body parsed into the same record; all rows inserted at the
end in one INSERT ... ON CONFLICT DO NOTHING into the pipeline's table. It imports nothing of this project.
Prints {"duration_s": ...}: from before the table is made to after the rows are committed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
import lxml.html
import psycopg2
import psycopg2.extras

# The pipeline's table (workers/postgres_worker.py prices_table, as SQLAlchemy creates it on PostgreSQL).
DDL = """
CREATE TABLE IF NOT EXISTS prices (id SERIAL PRIMARY KEY, symbol TEXT NOT NULL, price DOUBLE PRECISION,
    extracted_time TIMESTAMP WITHOUT TIME ZONE, currency TEXT, market_time TIMESTAMP WITHOUT TIME ZONE);
CREATE UNIQUE INDEX IF NOT EXISTS prices_symbol_market_time_key ON prices (symbol, market_time);
CREATE UNIQUE INDEX IF NOT EXISTS prices_symbol_extracted_time_without_market_time_key
    ON prices (symbol, extracted_time) WHERE market_time IS NULL;
"""
INSERT = "INSERT INTO prices (symbol, price, currency, market_time, extracted_time) VALUES %s ON CONFLICT DO NOTHING"


def symbols_of(page: bytes) -> list[str]:
    """First cell of each data row of table#constituents (as workers/wiki_worker.py reads it)."""
    table = lxml.html.fromstring(page).xpath('//table[@id="constituents"]')[0]
    rows = (row.xpath("./td | ./th") for row in table.xpath("./tr | ./thead/tr | ./tbody/tr"))
    return list(
        dict.fromkeys(" ".join(cells[0].text_content().split()) for cells in rows if cells and cells[0].tag == "td")
    )


def record(symbol: str, body: bytes) -> tuple:
    """(symbol, price, currency, market_time, extracted_time), times naive UTC as the sink stores them."""
    meta = json.loads(body)["chart"]["result"][0]["meta"]
    market_time = datetime.fromtimestamp(meta["regularMarketTime"], UTC).replace(tzinfo=None)
    return (
        symbol,
        float(meta["regularMarketPrice"]),
        meta["currency"],
        market_time,
        datetime.now(UTC).replace(tzinfo=None),
    )


async def fetch_all(wiki_url: str, chart_url: str, concurrency: int) -> list[tuple]:
    """Every symbol's record: the page, then `concurrency` tasks over one session."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=20)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(wiki_url) as response:
            symbols = symbols_of(await response.read())
        todo, rows = iter(symbols), []

        async def worker() -> None:
            for symbol in todo:  # one shared iterator: each symbol taken once
                async with session.get(chart_url.format(symbol=quote(symbol.replace(".", "-")))) as response:
                    if response.status != 200:
                        raise RuntimeError(f"{symbol}: HTTP {response.status}")
                    rows.append(record(symbol, await response.read()))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return rows


def main(wiki_url: str, chart_url: str, concurrency: int, database_url: str, fetch=None) -> None:
    """Make the table, fetch every price (with `fetch`, this script's fetch_all unless given), insert them."""
    fetch = fetch or fetch_all
    started = time.perf_counter()
    conn = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://"))
    with conn, conn.cursor() as cursor:
        cursor.execute(DDL)
    rows = asyncio.run(fetch(wiki_url, chart_url, concurrency))
    with conn, conn.cursor() as cursor:
        psycopg2.extras.execute_values(cursor, INSERT, rows, page_size=len(rows))
    conn.close()
    print(json.dumps({"duration_s": time.perf_counter() - started, "rows": len(rows)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
