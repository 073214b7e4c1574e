"""PostgreSQL through psycopg2, without SQLAlchemy: `PostgresDatabase` (a small pool of connections, each checked
before use), the libpq settings every PostgreSQL connection gets (`postgres_connect_args`), and the words
PostgreSQL reserves."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.storage.base import BaseDatabase
from core.storage.table import Table, UniqueIndex, has_unkeyed
from core.storage.url import DatabaseUrl


def postgres_connect_args(connect_timeout_s: float, statement_timeout_s: float) -> dict[str, Any]:
    """libpq settings: a connect timeout, a statement timeout (so no write can wait forever) and TCP
    keepalives (a server that vanished without closing the connection is noticed in about 20 s, not hours)."""
    options = f"{os.environ.get('PGOPTIONS', '')} -c statement_timeout={int(statement_timeout_s * 1000)}"
    return {
        "connect_timeout": max(int(connect_timeout_s), 1),
        "application_name": "yaml-pipeline",
        "options": options.strip(),  # given here, libpq would ignore PGOPTIONS: keep the user's too
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 2,
    }


class PostgresDatabase(BaseDatabase):
    """PostgreSQL through psycopg2: up to `pool_size` idle connections kept, each pinged before it is used
    again (a restarted server costs a reconnect, not an error); a connection that failed is closed."""

    TYPES = {"text": "TEXT", "double": "DOUBLE PRECISION", "timestamp": "TIMESTAMP WITHOUT TIME ZONE"}
    name = "postgresql"

    def __init__(
        self, url: DatabaseUrl, *, pool_size: int, connect_timeout_s: float, statement_timeout_s: float
    ) -> None:
        import psycopg2

        self._psycopg2 = psycopg2
        self.url = url
        self.pool_size = pool_size
        self._connect_args = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
            **postgres_connect_args(connect_timeout_s, statement_timeout_s),
            **url.query,
        }
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in a transaction, committed at the end of the block, rolled back if it raises."""
        conn = self._checkout()
        try:
            with conn.cursor() as cursor:
                yield cursor
            conn.commit()
        except BaseException as exc:
            if self._broken(conn, exc):
                self._discard(conn)
            else:
                self._rollback_and_keep(conn)
            raise
        self._keep(conn)

    def has_table(self, table: str) -> bool:
        with self.transaction() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (self.quote(table),))
            return cursor.fetchone()[0]

    def columns(self, table: str) -> set[str]:
        with self.transaction() as cursor:
            cursor.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (self.quote(table),),
            )
            return {name for (name,) in cursor.fetchall()}

    def unique_indexes(self, table: str) -> list[UniqueIndex]:
        """Every unique index on columns (unique constraints and the primary key have one), partial ones
        with their condition; indexes on expressions are left out."""
        with self.transaction() as cursor:
            cursor.execute(
                "SELECT c.relname, (SELECT array_agg(a.attname::text) FROM unnest(i.indkey) AS k(n) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n), "
                "pg_get_expr(i.indpred, i.indrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indexprs IS NULL",
                (self.quote(table),),
            )
            return [UniqueIndex(name, frozenset(columns), where) for name, columns, where in cursor.fetchall()]

    def create_table(self, table: Table) -> None:
        columns = ", ".join(
            f"{self.quote(name)} {self.type_sql(kind)}{' NOT NULL' if name in table.required else ''}"
            for name, kind in table.columns
        )
        with self.transaction() as cursor:
            cursor.execute(f"CREATE TABLE {self.quote(table.name)} (id SERIAL PRIMARY KEY, {columns})")
            cursor.execute(self.index_sql(table))
            if table.fallback_key:
                cursor.execute(self.fallback_index_sql(table))

    def index_sql(self, table: Table) -> str:
        return (
            f"CREATE UNIQUE INDEX {self.quote(table.index_name)} ON {self.quote(table.name)} "
            f"({', '.join(map(self.quote, table.unique_key))})"
        )

    def fallback_index_sql(self, table: Table) -> str:
        return (
            f"CREATE UNIQUE INDEX {self.quote(table.fallback_index_name)} ON {self.quote(table.name)} "
            f"({', '.join(map(self.quote, table.fallback_key))}) WHERE {self.unkeyed(table)}"
        )

    def type_sql(self, kind: str) -> str:
        return self.TYPES[kind]

    @staticmethod
    def quote(name: str) -> str:
        """The identifier, in double quotes only where PostgreSQL needs them."""
        if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in RESERVED:
            return name
        return '"' + name.replace('"', '""') + '"'

    def insert(self, table: Table, rows: list[list[Any]]) -> int:
        """COPY into a temporary table, then INSERT ... ON CONFLICT DO NOTHING: near COPY's speed (executemany
        INSERTs are several times slower), and a row already stored is skipped. Returns the rows added.

        Rows the unique key cannot tell apart (a NULL in it) go in by a second INSERT against the fallback
        key, sent only when the batch has such rows: one ON CONFLICT can name one index."""
        import csv
        import io

        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)  # None becomes an empty unquoted field: NULL to COPY's csv format
        buffer.seek(0)
        staging, columns = self.quote(f"{table.name}_staging"), ", ".join(map(self.quote, table.column_names))
        definition = ", ".join(f"{self.quote(name)} {self.type_sql(kind)}" for name, kind in table.columns)
        move = f"INSERT INTO {self.quote(table.name)} ({columns}) SELECT {columns} FROM {staging}"
        key = f"ON CONFLICT ({', '.join(map(self.quote, table.unique_key))}) DO NOTHING"
        unkeyed = has_unkeyed(table, rows)
        with self.transaction() as cursor:  # a temporary table lives as long as its connection
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ({definition}) ON COMMIT DELETE ROWS")
            cursor.copy_expert(f"COPY {staging} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
            if not unkeyed:
                cursor.execute(f"{move} {key}")
                return cursor.rowcount
            condition = self.unkeyed(table)
            cursor.execute(f"{move} WHERE NOT ({condition}) {key}")
            added = cursor.rowcount
            cursor.execute(
                f"{move} WHERE {condition} ON CONFLICT ({', '.join(map(self.quote, table.fallback_key))}) "
                f"WHERE {condition} DO NOTHING"
            )
            return added + cursor.rowcount

    def is_transient(self, exc: BaseException) -> bool:
        """Lost or refused connections, a restarting server and timeouts are worth a retry; bad data is not."""
        return isinstance(exc, (self._psycopg2.OperationalError, self._psycopg2.InterfaceError))

    def problem(self, exc: BaseException) -> tuple[str, bool] | None:
        """(what the database said, whether its settings were refused) for a database error, else None."""
        if isinstance(exc, self._psycopg2.Error):
            return " ".join(str(exc).split()), isinstance(exc, self._psycopg2.OperationalError)
        return None

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _checkout(self) -> Any:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._psycopg2.connect(**{k: v for k, v in self._connect_args.items() if v is not None})
            try:  # pre-ping: a connection the server dropped (a restart) is replaced here, not failed on
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
                conn.rollback()
                return conn
            except self._psycopg2.Error:
                conn.close()

    def _keep(self, conn: Any) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _rollback_and_keep(self, conn: Any) -> None:
        try:
            conn.rollback()
        except self._psycopg2.Error:
            conn.close()
            return
        self._keep(conn)

    def _discard(self, conn: Any) -> None:
        try:
            conn.close()
        except self._psycopg2.Error:
            pass

    def _broken(self, conn: Any, exc: BaseException) -> bool:
        return bool(conn.closed) or self.is_transient(exc) or not isinstance(exc, Exception)


# Words PostgreSQL reserves (as column or table names they need quotes).
RESERVED = frozenset(
    "all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate "
    "collation column concurrently constraint create cross current_catalog current_date current_role "
    "current_schema current_time current_timestamp current_user default deferrable desc distinct do else end "
    "except false fetch for foreign freeze from full grant group having ilike in initially inner intersect "
    "into is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null "
    "offset on only or order outer overlaps placing primary references returning right select session_user "
    "similar some symmetric system_user table tablesample then to trailing true union unique user using "
    "variadic verbose when where window with".split()
)
