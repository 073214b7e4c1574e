"""Sink stage: price records into the `prices` table, in batches, idempotently."""
from __future__ import annotations

import csv
import io
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from core.errors import StartupError
from workers.base import BatchWorker

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

COLUMNS = ("symbol", "price", "currency", "market_time", "extracted_time")
UNIQUE_KEY = ("symbol", "extracted_time")


def prices_table(name: str = "prices", metadata: sa.MetaData | None = None) -> sa.Table:
    """The course's columns (id, symbol, price, extracted_time) plus currency and market_time; times in UTC."""
    import sqlalchemy as sa  # here, not at the top: --check need not load SQLAlchemy
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
        """Create the table if missing. A table made by hand (the course's id, symbol, price, extracted_time)
        keeps every row: the columns it lacks and the unique key are added, each change logged with the SQL
        that undoes it; duplicates that stop the key refuse the run (StartupError) before anything is changed."""
        import sqlalchemy as sa
        inspector = sa.inspect(self.engine)
        name = self.table.name
        if not inspector.has_table(name):
            self.table.metadata.create_all(self.engine)
            logger.info("created table %s", name)
            return
        have = {column["name"] for column in inspector.get_columns(name)}
        missing = [column for column in self.table.columns if column.name not in have]
        index = next(iter(self.table.indexes))
        add_key = not _has_unique_key(inspector, name)
        if add_key:
            self._refuse_duplicates(index.name)
        quote = self.engine.dialect.identifier_preparer.quote
        added = [f"{quote(column.name)} {column.type.compile(dialect=self.engine.dialect)}" for column in missing]
        with self.engine.begin() as conn:
            for column in added:
                conn.execute(sa.text(f"ALTER TABLE {quote(name)} ADD COLUMN {column}"))
            if add_key:
                index.create(conn)
        if added:
            logger.warning("table %s: added column(s) %s, which this runner stores; its rows are kept. To undo: %s",
                           name, ", ".join(added), " ".join(f"ALTER TABLE {quote(name)} DROP COLUMN {quote(c.name)};"
                                                            for c in missing))
        if add_key:
            logger.warning("table %s: added the unique index %s on (%s), so a retried batch stores nothing twice. "
                           "To undo: DROP INDEX %s;", name, index.name, ", ".join(UNIQUE_KEY), quote(index.name))

    def _refuse_duplicates(self, index: str) -> None:
        """StartupError when rows the unique key would refuse are already there, saying how to find and fix them."""
        import sqlalchemy as sa
        quote = self.engine.dialect.identifier_preparer.quote
        table, key = quote(self.table.name), ", ".join(UNIQUE_KEY)
        both = " AND ".join(f"{column} IS NOT NULL" for column in UNIQUE_KEY)  # NULLs never clash in a unique key
        find = f"SELECT {key}, count(*) FROM {table} WHERE {both} GROUP BY {key} HAVING count(*) > 1"
        with self.engine.connect() as conn:
            pairs = conn.execute(sa.text(f"SELECT count(*) FROM ({find}) AS duplicated")).scalar_one()
        if pairs:
            raise StartupError(
                f"table {self.table.name} holds {pairs} ({key}) pair(s) more than once, so the unique index {index} "
                f"that keeps a retried batch from storing rows twice cannot be added. The run refuses to start: "
                f"nothing was fetched and the table is unchanged. Find them with: {find}; keep one row of each, "
                f"e.g. DELETE FROM {table} WHERE {both} AND id NOT IN (SELECT min(id) FROM {table} WHERE {both} "
                f"GROUP BY {key}); or give the sink another table (params: table)")

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
        import sqlalchemy as sa
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
        import sqlalchemy as sa
        from core.database import describe, settings_hint
        writer = self._writer()
        where = describe(writer.engine.url)
        logger.info("%s: storing into %s, table %s", self.group.name, where, self.table)
        try:
            writer.create_table()
        except sa.exc.DBAPIError as exc:
            hint = f"; {settings_hint()}" if isinstance(exc, sa.exc.OperationalError) and \
                writer.engine.dialect.name == "postgresql" else ""
            raise StartupError(f"cannot use the database {where}: {exc.orig}{hint}") from None

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        self._writer().insert(items)

    def is_transient(self, exc: BaseException) -> bool:
        """Lost or refused connections, a restarting server and timeouts are worth a retry; bad data is not."""
        import sqlalchemy as sa
        if isinstance(exc, sa.exc.DBAPIError):
            if exc.connection_invalidated:
                return True
            exc = exc.orig  # the COPY runs on the driver's cursor, so its errors come unwrapped: compare those
        dbapi = self._writer().engine.dialect.dbapi
        return isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError, sa.exc.TimeoutError))

    def _writer(self) -> PostgresWorker:
        def make() -> PostgresWorker:
            from core.database import database_url, make_engine
            engine = make_engine(database_url(), pool_size=self.group.spec.instances,
                                 connect_timeout_s=self.connect_timeout_s,
                                 statement_timeout_s=self.statement_timeout_s)
            return PostgresWorker(engine, self.table)
        return self.group.resource("writer", make)


def _has_unique_key(inspector: sa.Inspector, table: str) -> bool:
    """Whether a unique index, constraint or primary key covers exactly (symbol, extracted_time)."""
    wanted = set(UNIQUE_KEY)
    keys = [index["column_names"] for index in inspector.get_indexes(table) if index.get("unique")]
    keys += [constraint["column_names"] for constraint in inspector.get_unique_constraints(table)]
    keys.append(inspector.get_pk_constraint(table).get("constrained_columns") or [])
    return any(set(columns) == wanted for columns in keys)


def _utc_naive(value: Any) -> Any:
    """The course's columns are `timestamp` without time zone: store UTC wall time."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
