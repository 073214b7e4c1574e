"""Sink stage: price records into the `prices` table, in batches, idempotently."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.base.errors import StartupError
from core.storage.table import Table
from workers.base import BatchWorker

if TYPE_CHECKING:
    from core.storage.postgres import PostgresDatabase
    from core.storage.sqlalchemy_db import SqlAlchemyDatabase

logger = logging.getLogger(__name__)

COLUMNS = ("symbol", "price", "currency", "market_time", "extracted_time")
#: What identifies an observation: a symbol at one market time (Yahoo's regularMarketTime), however often it is
#: fetched. A price without a market time (the quote page's, or a row of the course's table) is told apart
#: only by when it was fetched.
UNIQUE_KEY = ("symbol", "market_time")
FALLBACK_KEY = ("symbol", "extracted_time")


def prices_table(name: str = "prices") -> Table:
    """The course's columns (id, symbol, price, extracted_time) plus currency and market_time; times in UTC.
    Unique on (symbol, market_time), so a repeat of an observation (a retried batch, a replay, an item fetched
    again) is a no-op; rows without a market time are unique on (symbol, extracted_time)."""
    kinds = {
        "symbol": "text",
        "price": "double",
        "extracted_time": "timestamp",
        "currency": "text",
        "market_time": "timestamp",
    }
    return Table(
        name,
        tuple((column, kinds[column]) for column in COLUMNS),
        required=("symbol",),
        unique_key=UNIQUE_KEY,
        fallback_key=FALLBACK_KEY,
    )


class PostgresWorker:
    """Writes price records to one table of one database (core.storage.database.open_database)."""

    def __init__(self, database: PostgresDatabase | SqlAlchemyDatabase, table: str = "prices") -> None:
        self.database = database
        self.table = prices_table(table)

    def create_table(self) -> None:
        """Create the table if missing. A table made by hand (the course's id, symbol, price, extracted_time) or
        by an older runner keeps every row: the columns and unique keys it lacks are added, each change logged
        with the SQL that undoes it; rows that break a key refuse the run (StartupError) before anything changes."""
        db, table, name = self.database, self.table, self.table.name
        if not db.has_table(name):
            db.create_table(table)
            logger.info("created table %s", name)
            return
        have = db.columns(name)
        missing = [(column, kind) for column, kind in table.columns if column not in have]
        indexes = db.unique_indexes(name)
        unkeyed = db.unkeyed(table)
        add_key = not any(index.covers(table.unique_key) for index in indexes)
        add_fallback = not any(index.covers(table.fallback_key, unkeyed) for index in indexes)
        if add_key and have.issuperset(table.unique_key):  # a key column just added holds only NULLs
            self._refuse_duplicates(table.unique_key, table.index_name)
        if add_fallback:
            self._refuse_duplicates(
                table.fallback_key,
                table.fallback_index_name,
                among=unkeyed if have.issuperset(table.nullable_key) else None,
            )
        quote = db.quote
        added = [f"{quote(column)} {db.type_sql(kind)}" for column, kind in missing]
        with db.transaction() as cursor:
            for column in added:
                cursor.execute(f"ALTER TABLE {quote(name)} ADD COLUMN {column}")
            if add_key:
                cursor.execute(db.index_sql(table))
            if add_fallback:
                cursor.execute(db.fallback_index_sql(table))
        if add_key:
            logger.warning(
                "table %s: added the unique index %s on (%s), so an observation (a symbol at one market "
                "time) is stored once however often it is fetched or written. To undo: DROP INDEX %s;",
                name,
                table.index_name,
                ", ".join(table.unique_key),
                quote(table.index_name),
            )
        if add_fallback:
            logger.warning(
                "table %s: added the unique index %s on (%s) where %s (rows without a market time: "
                "prices from the quote page, rows stored before the column existed), so a retried batch "
                "of them stores nothing twice. To undo: DROP INDEX %s;",
                name,
                table.fallback_index_name,
                ", ".join(table.fallback_key),
                unkeyed,
                quote(table.fallback_index_name),
            )
        # Logged last, as its undo must run last: an index on a column must go before the column can.
        if added:
            logger.warning(
                "table %s: added column(s) %s, which this runner stores; its rows are kept. To undo: %s",
                name,
                ", ".join(added),
                " ".join(f"ALTER TABLE {quote(name)} DROP COLUMN {quote(c)};" for c, _ in missing),
            )

    def _refuse_duplicates(self, key: tuple[str, ...], index: str, among: str | None = None) -> None:
        """StartupError when rows the unique index on `key` (over the rows matching `among`) would refuse are
        already there, saying how to find and fix them."""
        quote = self.database.quote
        table, columns = quote(self.table.name), ", ".join(map(quote, key))
        rows = " AND ".join(
            [f"{quote(column)} IS NOT NULL" for column in key]  # NULLs never clash in a unique key
            + ([f"({among})"] if among else [])
        )
        find = f"SELECT {columns}, count(*) FROM {table} WHERE {rows} GROUP BY {columns} HAVING count(*) > 1"
        pairs = self.database.scalar(f"SELECT count(*) FROM ({find}) AS duplicated")
        if pairs:
            which = f" among its rows where {among}" if among else ""
            raise StartupError(
                f"table {self.table.name} holds {pairs} ({', '.join(key)}) pair(s) more than once{which}, so the "
                f"unique index {index} that keeps a price from being stored twice cannot be added. The run refuses "
                f"to start: nothing was fetched and the table is unchanged. Find them with: {find}; keep one row of "
                f"each, e.g. DELETE FROM {table} WHERE {rows} AND id NOT IN (SELECT min(id) FROM {table} WHERE "
                f"{rows} GROUP BY {columns}); or give the sink another table (params: table)"
            )

    def insert(self, records: list[dict[str, Any]]) -> int:
        """Insert in one transaction; rows already present (the same observation) are skipped. Returns the rows
        added."""
        rows = [[_utc_naive(record.get(key)) for key in COLUMNS] for record in records]
        return self.database.insert(self.table, rows)

    def close(self) -> None:
        """Close the database's pooled connections."""
        self.database.close()


class PostgresMasterScheduler(BatchWorker):
    """Sink: stores each record; the group shares one engine. DATABASE_URL / POSTGRES_* pick the database."""

    def __init__(
        self, *, table: str = "prices", connect_timeout_s: float = 5.0, statement_timeout_s: float = 30.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_s = statement_timeout_s

    def open_group(self) -> None:
        """Connect and create the table before anything is fetched, so a wrong database fails in seconds."""
        from core.storage.settings import settings_hint
        from core.storage.url import describe

        writer = self._writer()
        where = describe(writer.database.url)
        logger.info("%s: storing into %s, table %s", self.group.name, where, self.table)
        try:
            writer.create_table()
        except Exception as exc:
            problem = writer.database.problem(exc)
            if problem is None:
                raise
            said, refused = problem
            hint = f"; {settings_hint()}" if refused and writer.database.name == "postgresql" else ""
            raise StartupError(f"cannot use the database {where}: {said}{hint}") from None

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        added = self._writer().insert(items)
        if added < len(items):
            logger.info(
                "%s: %d of %d record(s) already stored (the same symbol at the same market time, or a "
                "retried batch): the stored rows are kept",
                self.name,
                len(items) - added,
                len(items),
            )

    def is_transient(self, exc: BaseException) -> bool:
        """Lost or refused connections, a restarting server and timeouts are worth a retry; bad data is not."""
        return self._writer().database.is_transient(exc)

    def _writer(self) -> PostgresWorker:
        def make() -> PostgresWorker:
            from core.storage.database import open_database
            from core.storage.settings import database_url

            database = open_database(
                database_url(),
                pool_size=self.group.spec.instances,
                connect_timeout_s=self.connect_timeout_s,
                statement_timeout_s=self.statement_timeout_s,
            )
            return PostgresWorker(database, self.table)

        return self.group.resource("writer", make)


def _utc_naive(value: Any) -> Any:
    """The course's columns are `timestamp` without time zone: store UTC wall time."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
