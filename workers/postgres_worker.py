"""Sink stage: price records into the `prices` table, in batches, idempotently."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from core.database import Table
from core.errors import StartupError
from workers.base import BatchWorker

if TYPE_CHECKING:
    from core.database import PostgresDatabase, SqlAlchemyDatabase

logger = logging.getLogger(__name__)

COLUMNS = ("symbol", "price", "currency", "market_time", "extracted_time")
UNIQUE_KEY = ("symbol", "extracted_time")


def prices_table(name: str = "prices") -> Table:
    """The course's columns (id, symbol, price, extracted_time) plus currency and market_time; times in UTC.
    A retried batch inserts the same (symbol, extracted_time) again; the unique key makes that a no-op."""
    kinds = {"symbol": "text", "price": "double", "extracted_time": "timestamp", "currency": "text",
             "market_time": "timestamp"}
    return Table(name, tuple((column, kinds[column]) for column in COLUMNS), required=("symbol",),
                 unique_key=UNIQUE_KEY)


class PostgresWorker:
    """Writes price records to one table of one database (core.database.open_database)."""

    def __init__(self, database: PostgresDatabase | SqlAlchemyDatabase, table: str = "prices") -> None:
        self.database = database
        self.table = prices_table(table)

    def create_table(self) -> None:
        """Create the table if missing. A table made by hand (the course's id, symbol, price, extracted_time)
        keeps every row: the columns it lacks and the unique key are added, each change logged with the SQL
        that undoes it; duplicates that stop the key refuse the run (StartupError) before anything is changed."""
        db, table, name = self.database, self.table, self.table.name
        if not db.has_table(name):
            db.create_table(table)
            logger.info("created table %s", name)
            return
        have = db.columns(name)
        missing = [(column, kind) for column, kind in table.columns if column not in have]
        add_key = set(UNIQUE_KEY) not in db.unique_keys(name)
        if add_key:
            self._refuse_duplicates()
        quote = db.quote
        added = [f"{quote(column)} {db.type_sql(kind)}" for column, kind in missing]
        with db.transaction() as cursor:
            for column in added:
                cursor.execute(f"ALTER TABLE {quote(name)} ADD COLUMN {column}")
            if add_key:
                cursor.execute(db.index_sql(table))
        if added:
            logger.warning("table %s: added column(s) %s, which this runner stores; its rows are kept. To undo: %s",
                           name, ", ".join(added), " ".join(f"ALTER TABLE {quote(name)} DROP COLUMN {quote(c)};"
                                                            for c, _ in missing))
        if add_key:
            logger.warning("table %s: added the unique index %s on (%s), so a retried batch stores nothing twice. "
                           "To undo: DROP INDEX %s;", name, table.index_name, ", ".join(UNIQUE_KEY),
                           quote(table.index_name))

    def _refuse_duplicates(self) -> None:
        """StartupError when rows the unique key would refuse are already there, saying how to find and fix them."""
        quote = self.database.quote
        table, key = quote(self.table.name), ", ".join(UNIQUE_KEY)
        both = " AND ".join(f"{column} IS NOT NULL" for column in UNIQUE_KEY)  # NULLs never clash in a unique key
        find = f"SELECT {key}, count(*) FROM {table} WHERE {both} GROUP BY {key} HAVING count(*) > 1"
        pairs = self.database.scalar(f"SELECT count(*) FROM ({find}) AS duplicated")
        if pairs:
            raise StartupError(
                f"table {self.table.name} holds {pairs} ({key}) pair(s) more than once, so the unique index "
                f"{self.table.index_name} that keeps a retried batch from storing rows twice cannot be added. The "
                f"run refuses to start: nothing was fetched and the table is unchanged. Find them with: {find}; "
                f"keep one row of each, e.g. DELETE FROM {table} WHERE {both} AND id NOT IN (SELECT min(id) FROM "
                f"{table} WHERE {both} GROUP BY {key}); or give the sink another table (params: table)")

    def insert(self, records: list[dict[str, Any]]) -> int:
        """Insert in one transaction; rows already present (same symbol and time) are skipped. Returns rows sent."""
        rows = [[_utc_naive(record.get(key)) for key in COLUMNS] for record in records]
        self.database.insert(self.table, rows)
        return len(rows)

    def close(self) -> None:
        """Close the database's pooled connections."""
        self.database.close()


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
        from core.database import describe, settings_hint
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
        self._writer().insert(items)

    def is_transient(self, exc: BaseException) -> bool:
        """Lost or refused connections, a restarting server and timeouts are worth a retry; bad data is not."""
        return self._writer().database.is_transient(exc)

    def _writer(self) -> PostgresWorker:
        def make() -> PostgresWorker:
            from core.database import database_url, open_database
            database = open_database(database_url(), pool_size=self.group.spec.instances,
                                     connect_timeout_s=self.connect_timeout_s,
                                     statement_timeout_s=self.statement_timeout_s)
            return PostgresWorker(database, self.table)
        return self.group.resource("writer", make)


def _utc_naive(value: Any) -> Any:
    """The course's columns are `timestamp` without time zone: store UTC wall time."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
