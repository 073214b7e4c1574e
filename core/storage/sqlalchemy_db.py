"""Any database SQLAlchemy knows (SQLite by default) through a SQLAlchemy engine: `SqlAlchemyDatabase` and
`make_engine`. SQLAlchemy is imported only when one is made (it costs a run about 0.1 s of CPU)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.storage.base import BaseDatabase
from core.storage.postgres import postgres_connect_args
from core.storage.table import Table, UniqueIndex, has_unkeyed
from core.storage.url import DatabaseUrl


class SqlAlchemyDatabase(BaseDatabase):
    """Any other database (SQLite by default) through a SQLAlchemy engine: the same offer as PostgresDatabase."""

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.engine = engine
        self.url = engine.url
        self.name = engine.dialect.name
        self._tables: dict[Table, Any] = {}

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def has_table(self, table: str) -> bool:
        return self._sa.inspect(self.engine).has_table(table)

    def columns(self, table: str) -> set[str]:
        return {column["name"] for column in self._sa.inspect(self.engine).get_columns(table)}

    def unique_indexes(self, table: str) -> list[UniqueIndex]:
        inspector = self._sa.inspect(self.engine)
        keys = [
            UniqueIndex(index["name"], frozenset(index["column_names"]), _index_where(index))
            for index in inspector.get_indexes(table)
            if index.get("unique") and None not in index["column_names"]
        ]
        keys += [
            UniqueIndex(constraint["name"], frozenset(constraint["column_names"]))
            for constraint in inspector.get_unique_constraints(table)
        ]
        primary = inspector.get_pk_constraint(table)
        keys.append(UniqueIndex(primary.get("name") or "", frozenset(primary.get("constrained_columns") or ())))
        return keys

    def create_table(self, table: Table) -> None:
        self.sa_table(table).metadata.create_all(self.engine)

    def index_sql(self, table: Table) -> str:
        return self._create_index_sql(table, table.index_name)

    def fallback_index_sql(self, table: Table) -> str:
        return self._create_index_sql(table, table.fallback_index_name)

    def _create_index_sql(self, table: Table, name: str) -> str:
        from sqlalchemy.schema import CreateIndex

        index = next(index for index in self.sa_table(table).indexes if index.name == name)
        return str(CreateIndex(index).compile(dialect=self.engine.dialect))

    def type_sql(self, kind: str) -> str:
        return self._type(kind).compile(dialect=self.engine.dialect)

    def quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def insert(self, table: Table, rows: list[list[Any]]) -> int:
        """A multi-row INSERT that skips rows already stored (ON CONFLICT DO NOTHING where the database has it;
        rows the unique key cannot tell apart against the fallback key). Returns the rows added."""
        sa_table = self.sa_table(table)
        insert = _skipping_insert(self.name)
        records = [dict(zip(table.column_names, row, strict=False)) for row in rows]
        if insert is None:
            batches = [(self._sa.insert(sa_table), records)]
        elif has_unkeyed(table, rows):
            unkeyed = [record for record in records if any(record[name] is None for name in table.nullable_key)]
            keyed = [record for record in records if all(record[name] is not None for name in table.nullable_key)]
            batches = [
                (insert(sa_table).on_conflict_do_nothing(index_elements=list(table.unique_key)), keyed),
                (
                    insert(sa_table).on_conflict_do_nothing(
                        index_elements=list(table.fallback_key), index_where=self._sa.text(self.unkeyed(table))
                    ),
                    unkeyed,
                ),
            ]
        else:
            batches = [(insert(sa_table).on_conflict_do_nothing(index_elements=list(table.unique_key)), records)]
        added = 0
        with self.engine.begin() as conn:
            for statement, batch in batches:
                if batch:
                    count = conn.execute(statement, batch).rowcount
                    added += count if count >= 0 else len(batch)  # -1: the driver does not say
        return added

    def is_transient(self, exc: BaseException) -> bool:
        """Lost or refused connections, a restarting server and timeouts are worth a retry; bad data is not."""
        sa = self._sa
        if isinstance(exc, sa.exc.DBAPIError):
            if exc.connection_invalidated:
                return True
            exc = exc.orig
        dbapi = self.engine.dialect.dbapi
        return isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError, sa.exc.TimeoutError))

    def problem(self, exc: BaseException) -> tuple[str, bool] | None:
        if isinstance(exc, self._sa.exc.DBAPIError):
            return str(exc.orig), isinstance(exc, self._sa.exc.OperationalError)
        return None

    def close(self) -> None:
        self.engine.dispose()

    def sa_table(self, table: Table) -> Any:
        """The table as SQLAlchemy describes it (one per Table, on its own MetaData)."""
        if table not in self._tables:
            sa = self._sa
            self._tables[table] = sa.Table(
                table.name,
                sa.MetaData(),
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                *(
                    sa.Column(name, self._type(kind), nullable=name not in table.required)
                    for name, kind in table.columns
                ),
                sa.Index(table.index_name, *table.unique_key, unique=True),
                *(
                    [
                        sa.Index(
                            table.fallback_index_name,
                            *table.fallback_key,
                            unique=True,
                            sqlite_where=sa.text(self.unkeyed(table)),
                            postgresql_where=sa.text(self.unkeyed(table)),
                        )
                    ]
                    if table.fallback_key
                    else []
                ),
            )
        return self._tables[table]

    def _type(self, kind: str) -> Any:
        return {"text": self._sa.Text(), "double": self._sa.Double(), "timestamp": self._sa.DateTime()}[kind]


def _skipping_insert(dialect: str) -> Callable[[Any], Any] | None:
    """The dialect's INSERT that can skip rows a unique index refuses (ON CONFLICT DO NOTHING), where it has one."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    return None


def _index_where(index: Mapping[str, Any]) -> str | None:
    """The condition of a partial index as SQLAlchemy reflects it (`sqlite_where`, `postgresql_where`), or None."""
    where = next((value for key, value in (index.get("dialect_options") or {}).items() if key.endswith("_where")), None)
    return None if where is None else str(where)


def make_engine(
    url: DatabaseUrl, *, pool_size: int = 5, connect_timeout_s: float = 5.0, statement_timeout_s: float = 30.0
) -> Any:
    """A SQLAlchemy engine with pre-ping (a restarted server costs one retry, not an error), a connect timeout,
    and on PostgreSQL a statement timeout and TCP keepalives, so no write can wait forever."""
    import sqlalchemy as sa

    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"timeout": statement_timeout_s}  # how long a write waits for a lock
    elif backend == "postgresql":
        connect_args = postgres_connect_args(connect_timeout_s, statement_timeout_s)
    else:
        connect_args = {}
    return sa.create_engine(
        url.to_sqlalchemy(), pool_pre_ping=True, pool_size=pool_size, max_overflow=2, connect_args=connect_args
    )
