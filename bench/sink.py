"""Sink benchmark: rows/s of the Postgres worker for 100,000 rows, next to a plain COPY into the same table.

    .venv/bin/python bench/sink.py [--rows 100000] [--batch-size 5000] [--admin-url URL]

Each measurement gets a fresh database (created and dropped here) with the pipeline's `prices` table and its
unique index, so every writer pays for the same index.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fresh_database import ADMIN_URL, FreshDatabase  # noqa: E402
from core.storage.database import open_database  # noqa: E402
from core.storage.settings import database_url  # noqa: E402
from core.storage.sqlalchemy_db import SqlAlchemyDatabase  # noqa: E402
from workers.postgres_worker import COLUMNS, PostgresWorker  # noqa: E402


def records(count: int) -> list[dict]:
    """Price records like the Yahoo worker's, each its own observation (symbol, market_time)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "symbol": f"S{i % 600}",
            "price": 100 + i % 1000 / 7,
            "currency": "USD",
            "market_time": start + timedelta(seconds=i),
            "extracted_time": start + timedelta(microseconds=i),
        }
        for i in range(count)
    ]


@contextmanager
def fresh_table(admin_url: str) -> Iterator[sa.Engine]:
    """An engine on a new database holding the pipeline's prices table (with its unique index)."""
    with FreshDatabase(admin_url) as url:
        engine = sa.create_engine(url)
        database = open_database(database_url({"DATABASE_URL": url}))
        PostgresWorker(database).create_table()
        database.close()
        try:
            yield engine
        finally:
            engine.dispose()


def time_worker(engine: sa.Engine, rows: list[dict], batch_size: int) -> float:
    """The sink as it runs on PostgreSQL (psycopg2 directly, COPY via a staging table)."""
    return _time_writer(
        open_database(database_url({"DATABASE_URL": engine.url.render_as_string(False)})), rows, batch_size
    )


def time_core_insert(engine: sa.Engine, rows: list[dict], batch_size: int) -> float:
    """The sink's path before COPY, still its path on databases other than PostgreSQL: SQLAlchemy Core
    insert() executemany with ON CONFLICT DO NOTHING."""
    return _time_writer(SqlAlchemyDatabase(engine), rows, batch_size)


def _time_writer(database, rows: list[dict], batch_size: int) -> float:
    writer = PostgresWorker(database)
    started = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        writer.insert(rows[i : i + batch_size])
    seconds = time.perf_counter() - started
    database.close()
    return seconds


def time_plain_copy(engine: sa.Engine, rows: list[dict], batch_size: int) -> float:
    """COPY straight into the table (no staging, no conflict check): the speed of light for this table."""
    columns = ", ".join(COLUMNS)
    started = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        buffer = io.StringIO()
        csv.writer(buffer).writerows(
            [
                [r[k].replace(tzinfo=None) if isinstance(r[k], datetime) else r[k] for k in COLUMNS]
                for r in rows[i : i + batch_size]
            ]
        )
        buffer.seek(0)
        with engine.begin() as conn:
            conn.connection.dbapi_connection.cursor().copy_expert(
                f"COPY prices ({columns}) FROM STDIN WITH (FORMAT csv)", buffer
            )
    return time.perf_counter() - started


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM prices")).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    rows = records(args.rows)
    writers = {
        "plain COPY": time_plain_copy,
        "PostgresWorker (COPY via staging, ON CONFLICT)": time_worker,
        "Core insert() executemany, ON CONFLICT (before)": time_core_insert,
    }
    results: dict[str, list[float]] = {name: [] for name in writers}
    for _ in range(args.repeat):  # interleaved, so a slow moment of the machine hits all of them
        for name, timer in writers.items():
            with fresh_table(args.admin_url) as engine:
                seconds = timer(engine, rows, args.batch_size)
                assert count(engine) == args.rows, name
            results[name].append(args.rows / seconds)
    best = {name: max(rates) for name, rates in results.items()}
    print(f"| writer | rows/s (best of {args.repeat}) | all runs |")
    print("|---|---:|---|")
    for name, rates in results.items():
        print(f"| {name} | {best[name]:,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} |")
    ratio = best["PostgresWorker (COPY via staging, ON CONFLICT)"] / best["plain COPY"]
    print(
        f"\nPostgresWorker / plain COPY = {ratio:.0%} (target >= 50%); {args.rows:,} rows, batches of {args.batch_size}"
    )


if __name__ == "__main__":
    main()
