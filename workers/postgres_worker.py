"""Sink stage: price records into the `prices` table, in batches, idempotently."""
from __future__ import annotations

import csv
import io
import logging
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.database import database_url, describe, make_engine
from core.errors import StartupError
from workers.base import BatchWorker

logger = logging.getLogger(__name__)

COLUMNS = ("symbol", "price", "currency", "market_time", "extracted_time")
UNIQUE_KEY = ("symbol", "extracted_time")


def prices_table(name: str = "prices", metadata: sa.MetaData | None = None) -> sa.Table:
    """The course's columns (id, symbol, price, extracted_time) plus currency and market_time; times in UTC."""
    return sa.Table(
        name, metadata or sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("price", sa.Double),
        sa.Column("extracted_time", sa.DateTime),
        sa.Column("currency", sa.Text),
        sa.Column("market_time", sa.DateTime),
        # A retried batch inserts the same (symbol, extracted_time) again; the key makes that a no-op.
        sa.Index(f"{name}_symbol_extracted_time_key", *UNIQUE_KEY, unique=True),
    )


class PostgresWorker:
    """Writes price records to one table through one engine."""

    def __init__(self, engine: Engine, table: str = "prices") -> None:
        self.engine = engine
        self.table = prices_table(table)

    def create_table(self) -> None:
        """Create the table if missing; add this project's columns to a course-era table that lacks them."""
        self.table.metadata.create_all(self.engine)
        have = {column["name"] for column in sa.inspect(self.engine).get_columns(self.table.name)}
        missing = [column for column in self.table.columns if column.name not in have]
        quote = self.engine.dialect.identifier_preparer.quote
        with self.engine.begin() as conn:
            for column in missing:
                kind = column.type.compile(dialect=self.engine.dialect)
                conn.execute(sa.text(f"ALTER TABLE {quote(self.table.name)} ADD COLUMN {quote(column.name)} {kind}"))
            if missing:
                logger.info("added columns %s to table %s", [c.name for c in missing], self.table.name)
            for index in self.table.indexes:  # create_all skips these when the table already existed
                index.create(conn, checkfirst=True)

    def insert(self, records: list[dict[str, Any]]) -> int:
        """Insert in one transaction; rows already present (same symbol and time) are skipped. Returns rows sent."""
        rows = [[_utc_naive(record.get(key)) for key in COLUMNS] for record in records]
        if self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg2":
            self._copy(rows)
        else:
            with self.engine.begin() as conn:
                conn.execute(self._insert_statement(), [dict(zip(COLUMNS, row)) for row in rows])
        return len(rows)

    def _copy(self, rows: list[list[Any]]) -> None:
        """COPY into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING: near COPY's speed
        (executemany INSERTs are several times slower), and a retried batch still stores nothing twice."""
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)  # None becomes an empty unquoted field: NULL to COPY's csv format
        buffer.seek(0)
        quote = self.engine.dialect.identifier_preparer.quote
        staging, columns = quote(f"{self.table.name}_staging"), ", ".join(COLUMNS)
        with self.engine.begin() as conn:
            pooled = conn.connection
            cursor = pooled.dbapi_connection.cursor()
            if staging not in pooled.info:  # a temporary table lives as long as its connection
                cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (symbol text, price double precision, "
                               "currency text, market_time timestamp, extracted_time timestamp) ON COMMIT DELETE ROWS")
            cursor.copy_expert(f"COPY {staging} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
            cursor.execute(f"INSERT INTO {quote(self.table.name)} ({columns}) SELECT {columns} FROM {staging} "
                           f"ON CONFLICT ({', '.join(UNIQUE_KEY)}) DO NOTHING")
            pooled.info[staging] = True  # not reached when the batch fails: a rolled-back CREATE leaves no table

    def close(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()

    def _insert_statement(self) -> sa.Insert:
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            return sa.insert(self.table)
        return insert(self.table).on_conflict_do_nothing(index_elements=list(UNIQUE_KEY))


class PostgresMasterScheduler(BatchWorker):
    """Sink: stores each record; the group shares one engine. DATABASE_URL / POSTGRES_* pick the database."""

    def __init__(self, *, table: str = "prices", connect_timeout_s: float = 5.0, statement_timeout_s: float = 30.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_s = statement_timeout_s

    def open_group(self) -> None:
        """Connect and create the table before anything is fetched, so a wrong database fails in seconds."""
        writer = self._writer()
        where = describe(writer.engine.url)
        logger.info("%s: storing into %s, table %s", self.group.name, where, self.table)
        try:
            writer.create_table()
        except sa.exc.DBAPIError as exc:
            raise StartupError(f"cannot use the database {where}: {exc.orig}") from None

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        self._writer().insert(items)

    def is_transient(self, exc: BaseException) -> bool:
        """Lost or refused connections, a restarting server and timeouts are worth a retry; bad data is not."""
        if isinstance(exc, sa.exc.DBAPIError):
            if exc.connection_invalidated:
                return True
            exc = exc.orig  # the COPY runs on the driver's cursor, so its errors come unwrapped: compare those
        dbapi = self._writer().engine.dialect.dbapi
        return isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError, sa.exc.TimeoutError))

    def _writer(self) -> PostgresWorker:
        def make() -> PostgresWorker:
            engine = make_engine(database_url(), pool_size=self.group.spec.instances,
                                 connect_timeout_s=self.connect_timeout_s,
                                 statement_timeout_s=self.statement_timeout_s)
            return PostgresWorker(engine, self.table)
        return self.group.resource("writer", make)


def _utc_naive(value: Any) -> Any:
    """The course's columns are `timestamp` without time zone: store UTC wall time."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
