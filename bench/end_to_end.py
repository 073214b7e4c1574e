"""End-to-end benchmark: the shipped pipeline against a local server that answers each price request after
a set latency, PostgreSQL sink; wall time for several Yahoo instance counts next to the ideal
(503 x latency / instances) and next to the same job written plainly with pypeln's thread stages.

    .venv/bin/python bench/end_to_end.py [--latency 0.1] [--instances 1 2 4 8 16 32 64]

`main.py` runs as a user would (a subprocess, the shipped file, values changed with --set only). Its time is
the run's own `duration_s` from --stats-json (connect, create table, fetch, store); the process time, with
Python's start and imports, is shown too. pypeln's time is measured the same way, from before the Wikipedia
request to after the rows are committed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pypeln as pl
import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.fresh_database import ADMIN_URL, FreshDatabase  # noqa: E402
from sites import FakeSites  # noqa: E402
from workers.postgres_worker import PostgresWorker  # noqa: E402
from workers.wiki_worker import parse_constituents  # noqa: E402
from workers.yahoo_finance_worker import parse_chart, yahoo_symbol  # noqa: E402

PIPELINE = ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"


def run_main(sites: FakeSites, instances: int, database_url: str, workdir: Path) -> tuple[float, float]:
    """(run duration from the stats, process wall time) of `python main.py` with `instances` Yahoo workers."""
    stats = workdir / f"stats-{instances}.json"
    command = [
        sys.executable, str(ROOT / "main.py"), "--pipeline", str(PIPELINE), "--quiet", "--log-level", "WARNING",
        "--stats-json", str(stats),
        "--set", f"workers.WikiWorker.input_values=[{sites.wiki_url}]",
        "--set", f"workers.YahooFinanceWorker.instances={instances}",
        "--set", "workers.YahooFinanceWorker.params.requests_per_second=0",
        "--set", f"workers.YahooFinanceWorker.params.chart_url={sites.chart_url}",
    ]
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull}
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, timeout=600, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    report = json.loads(stats.read_text())
    assert report["groups"]["PostgresWorker"]["stored"] == 503, report
    return report["duration_s"], wall


def run_pypeln(sites: FakeSites, instances: int, database_url: str) -> float:
    """The same job written plainly: pypeln thread stages, one requests.Session, one insert at the end."""
    engine = sa.create_engine(database_url)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=instances))

    def price(symbol: str) -> dict:
        body = session.get(sites.chart_url.format(symbol=yahoo_symbol(symbol)), timeout=(5, 20)).json()
        value, currency, market_time = parse_chart(body)
        return {"symbol": symbol, "price": value, "currency": currency, "market_time": market_time}

    started = time.perf_counter()
    writer = PostgresWorker(engine)
    writer.create_table()
    symbols = parse_constituents(session.get(sites.wiki_url, timeout=(5, 20)).content)
    rows = list(pl.thread.map(price, symbols, workers=instances, maxsize=2 * instances))
    with engine.begin() as conn:
        conn.execute(sa.insert(writer.table), rows)
    seconds = time.perf_counter() - started
    assert len(rows) == 503
    session.close()
    engine.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per price request (default 0.1)")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    print(f"| Yahoo instances | ideal 503×{args.latency:g}s/n | main.py run | ratio to ideal | main.py process "
          "| pypeln | main.py / pypeln |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with FakeSites(latency_s=args.latency) as sites, tempfile.TemporaryDirectory() as workdir:
        for instances in args.instances:
            ideal = 503 * args.latency / instances
            with FreshDatabase(args.admin_url) as url:
                ours, wall = run_main(sites, instances, url, Path(workdir))
            with FreshDatabase(args.admin_url) as url:
                plain = run_pypeln(sites, instances, url)
            print(f"| {instances} | {ideal:.2f}s | {ours:.2f}s | {ours / ideal:.2f}× | {wall:.2f}s | {plain:.2f}s "
                  f"| {ours / plain:.2f} |", flush=True)


if __name__ == "__main__":
    main()
