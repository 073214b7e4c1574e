"""The S&P 500 job written plainly with pypeln's thread stages: the reference for bench/end_to_end.py.

    python bench/pypeln_job.py WIKI_URL CHART_URL INSTANCES DATABASE_URL

Runs in its own process, as main.py does, and prints {"duration_s": ...}: from before the table is made to
after the rows are committed (imports, like main.py's, are before the clock starts).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pypeln as pl
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.storage.database import open_database  # noqa: E402
from core.storage.settings import database_url  # noqa: E402
from workers.postgres_worker import PostgresWorker  # noqa: E402
from workers.wiki_worker import parse_constituents  # noqa: E402
from workers.yahoo_pages import parse_chart, yahoo_symbol  # noqa: E402


def main(wiki_url: str, chart_url: str, instances: int, url: str) -> None:
    started = time.perf_counter()
    database = open_database(database_url({"DATABASE_URL": url}))
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=instances))

    def price(symbol: str) -> dict:
        body = session.get(chart_url.format(symbol=yahoo_symbol(symbol)), timeout=(5, 20)).json()
        value, currency, market_time = parse_chart(body)
        return {"symbol": symbol, "price": value, "currency": currency, "market_time": market_time}

    writer = PostgresWorker(database)
    writer.create_table()
    symbols = parse_constituents(session.get(wiki_url, timeout=(5, 20)).content)
    rows = list(pl.thread.map(price, symbols, workers=instances, maxsize=2 * instances))
    writer.insert(rows)  # the runner's sink: COPY via a staging table
    writer.close()
    seconds = time.perf_counter() - started
    assert len(rows) == 503
    print(json.dumps({"duration_s": seconds}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
