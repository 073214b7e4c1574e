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
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.postgres_worker import COLUMNS, PostgresWorker  # noqa: E402

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def records(count: int) -> list[dict]:
    """Price records like the Yahoo worker's, each with its own (symbol, extracted_time)."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return [{"symbol": f"S{i % 600}", "price": 100 + i % 1000 / 7, "currency": "USD",
             "market_time": start, "extracted_time": start + timedelta(microseconds=i)} for i in range(count)]


class FreshDatabase:
    """A new database with the prices table; dropped on exit."""

    def __init__(self, admin_url: str) -> None:
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = f"bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> sa.Engine:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.engine = sa.create_engine(self.admin.url.set(database=self.name))
        PostgresWorker(self.engine).create_table()
        return self.engine

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def time_worker(engine: sa.Engine, rows: list[dict], batch_size: int) -> float:
    writer = PostgresWorker(engine)
    started = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        writer.insert(rows[i:i + batch_size])
    return time.perf_counter() - started


def time_core_insert(engine: sa.Engine, rows: list[dict], batch_size: int) -> float:
    """The sink's path before COPY: SQLAlchemy Core insert() executemany with ON CONFLICT DO NOTHING."""
    writer = PostgresWorker(engine)
    started = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        batch = [{k: r[k].replace(tzinfo=None) if isinstance(r[k], datetime) else r[k] for k in COLUMNS}
                 for r in rows[i:i + batch_size]]
        with engine.begin() as conn:
            conn.execute(writer._insert_statement(), batch)
    return time.perf_counter() - started


def time_plain_copy(engine: sa.Engine, rows: list[dict], batch_size: int) -> float:
    """COPY straight into the table (no staging, no conflict check): the speed of light for this table."""
    columns = ", ".join(COLUMNS)
    started = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        buffer = io.StringIO()
        csv.writer(buffer).writerows([[r[k].replace(tzinfo=None) if isinstance(r[k], datetime) else r[k]
                                       for k in COLUMNS] for r in rows[i:i + batch_size]])
        buffer.seek(0)
        with engine.begin() as conn:
            conn.connection.dbapi_connection.cursor().copy_expert(
                f"COPY prices ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
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
    writers = {"plain COPY": time_plain_copy, "PostgresWorker (COPY via staging, ON CONFLICT)": time_worker,
               "Core insert() executemany, ON CONFLICT (before)": time_core_insert}
    results: dict[str, list[float]] = {name: [] for name in writers}
    for _ in range(args.repeat):  # interleaved, so a slow moment of the machine hits all of them
        for name, timer in writers.items():
            with FreshDatabase(args.admin_url) as engine:
                seconds = timer(engine, rows, args.batch_size)
                assert count(engine) == args.rows, name
            results[name].append(args.rows / seconds)
    best = {name: max(rates) for name, rates in results.items()}
    print(f"| writer | rows/s (best of {args.repeat}) | all runs |")
    print("|---|---:|---|")
    for name, rates in results.items():
        print(f"| {name} | {best[name]:,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} |")
    ratio = best["PostgresWorker (COPY via staging, ON CONFLICT)"] / best["plain COPY"]
    print(f"\nPostgresWorker / plain COPY = {ratio:.0%} (target >= 50%); {args.rows:,} rows, batches of {args.batch_size}")


if __name__ == "__main__":
    main()
