"""Which database the pipeline writes to, and the connections one worker group shares to it.

A database URL is read here without SQLAlchemy (importing it costs a run about 0.1 s of CPU before the
first row): PostgreSQL through psycopg2 is talked to directly (`PostgresDatabase`: a small pool of
connections, each checked before use); SQLite and any other database SQLAlchemy knows go through a
SQLAlchemy engine (`SqlAlchemyDatabase`), imported only then. Both offer what the sink needs: a
transaction, the table's shape, its unique keys, and a fast insert that skips rows already stored.
"""

from __future__ import annotations

import getpass
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from core.base.paths import PROJECT_DIR, data_dir  # noqa: F401 - where older code and tests import them from
from core.base.redact import register_secret
from core.pipeline.problems import SettingsError

SQLITE_FILE = "prices.sqlite3"
POSTGRES_VARS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_PORT")
# The pip package that provides a driver's module, where the names differ.
DRIVER_PACKAGES = {
    "MySQLdb": "mysqlclient",
    "psycopg2": "psycopg2-binary",
    "psycopg": "psycopg[binary]",
    "mysql": "mysql-connector-python",
    "cx_Oracle": "cx_Oracle",
}
# A driver per database that installs from a wheel, without a compiler or client libraries.
EASY_DRIVERS = {
    "mysql": ("pymysql", "pymysql"),
    "mariadb": ("pymysql", "pymysql"),
    "postgresql": ("psycopg2", "psycopg2-binary"),
    "mssql": ("pymssql", "pymssql"),
}
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9]*(\+[A-Za-z0-9_]+)?")


class DatabaseConfigError(SettingsError):
    """The database settings in the environment cannot be used (the message holds no password)."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A database URL as SQLAlchemy writes them (dialect+driver://user:password@host:port/database?query),
    with the same attribute names as SQLAlchemy's URL."""

    drivername: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: dict[str, str] = field(default_factory=dict)

    def get_backend_name(self) -> str:
        return self.drivername.partition("+")[0]

    def get_driver_name(self) -> str:
        return self.drivername.partition("+")[2]

    def set(self, **changes: Any) -> DatabaseUrl:
        return replace(self, **changes)

    def render_as_string(self, hide_password: bool = True) -> str:
        """The URL as text; the password (percent-encoded as in the URL) is *** when hide_password."""
        text = f"{self.drivername}://"
        if self.username is not None:
            text += quote(self.username, safe="")
            if self.password is not None:
                text += ":" + ("***" if hide_password else quote(self.password, safe=""))
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += f"/{self.database}"
        if self.query:
            text += "?" + urlencode(self.query)
        return text

    def __str__(self) -> str:
        return self.render_as_string()

    def to_sqlalchemy(self) -> Any:
        """The same URL as SQLAlchemy's URL object (imports SQLAlchemy)."""
        from sqlalchemy.engine import URL

        return URL.create(
            self.drivername,
            username=self.username,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=self.query,
        )


def database_url(env: Mapping[str, str] = os.environ) -> DatabaseUrl:
    """DATABASE_URL if set, else the POSTGRES_* variables (an empty POSTGRES_USER is the login user, as for
    psql), else a SQLite file under the data folder."""
    raw = env.get("DATABASE_URL", "").strip()
    if raw:
        url, source = parse_database_url(raw), "DATABASE_URL"
    elif any(env.get(name) for name in POSTGRES_VARS):
        port = env.get("POSTGRES_PORT") or None
        if port is not None and not port.isdigit():
            raise DatabaseConfigError(f"POSTGRES_PORT must be a number, got {port!r}")
        url = DatabaseUrl(
            "postgresql+psycopg2",
            username=env.get("POSTGRES_USER") or login_user(env),
            password=env.get("POSTGRES_PASSWORD") or None,
            host=env.get("POSTGRES_HOST") or "localhost",
            port=int(port) if port else None,
            database=env.get("POSTGRES_DB") or "postgres",
        )
        source = "the POSTGRES_* settings"
    else:
        url, source = DatabaseUrl("sqlite", database=str(data_dir(env) / SQLITE_FILE)), "the SQLite default"
    if url.password:
        register_secret(url.password)
        register_secret(quote(url.password, safe=""))
    return _with_installed_driver(url, source)


def login_user(env: Mapping[str, str] = os.environ) -> str:
    """The role psql connects as without -U: PGUSER, else the login user (the course leaves POSTGRES_USER empty)."""
    return env.get("PGUSER") or getpass.getuser()


def settings_hint(env: Mapping[str, str] = os.environ) -> str:
    """Which variables to set when the database refused the settings it was given."""
    if env.get("DATABASE_URL", "").strip():
        return "check DATABASE_URL (postgresql://USER:PASSWORD@HOST:PORT/DBNAME)"
    if not any(env.get(name) for name in POSTGRES_VARS):
        return "set DATABASE_URL, or the POSTGRES_* variables"
    empty = [name for name in ("POSTGRES_USER", "POSTGRES_PASSWORD") if not env.get(name)]
    said = []
    if "POSTGRES_USER" in empty:
        said.append(f"POSTGRES_USER is empty, so it connected as {login_user(env)!r}, the login user, as psql does")
    if "POSTGRES_PASSWORD" in empty:
        said.append("POSTGRES_PASSWORD is empty, so no password was sent (only ~/.pgpass or a trust rule lets that in)")
    to_set = empty or ["POSTGRES_USER", "POSTGRES_PASSWORD"]
    where = (
        f"{env.get('POSTGRES_HOST') or 'localhost'}:{env.get('POSTGRES_PORT') or 5432}, "
        f"database {env.get('POSTGRES_DB') or 'postgres'}"
    )
    return "; ".join(
        said
        + [
            f"set {' and '.join(to_set)} (in .env.local or the environment) to a role of the server "
            f"at {where} (POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB), or set DATABASE_URL instead"
        ]
    )


def parse_database_url(raw: str) -> DatabaseUrl:
    """Read DATABASE_URL, masking its password first so no error below can print it."""
    scheme, sep, rest = raw.partition("://")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    register_secret(userinfo.partition(":")[2] or None)
    if "@" in userinfo:
        raise DatabaseConfigError("DATABASE_URL has an '@' in its user name or password: write it as %40")
    bad = DatabaseConfigError(
        "DATABASE_URL is not a database URL (expected e.g. postgresql://user:password@host:5432/dbname)"
    )
    if not sep or not SCHEME.fullmatch(scheme):
        raise bad
    user, colon, password = userinfo.partition(":")
    if hostport.startswith("["):  # [IPv6]:port
        host, bracket, port = hostport[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise bad
        port, has_port = port[1:], bool(port)
    else:
        host, has_port, port = hostport.partition(":")
    if has_port and not port.isdigit():
        raise bad
    return DatabaseUrl(
        scheme,
        username=unquote(user) if at and user else None,
        password=unquote(password) if at and colon else None,
        host=unquote(host) or None,
        port=int(port) if has_port else None,
        database=path if slash and path else None,
        query=dict(parse_qsl(query)),
    )


def describe(url: DatabaseUrl) -> str:
    """The URL with its password masked, for logs."""
    return url.render_as_string(hide_password=True)


def _with_installed_driver(url: DatabaseUrl, source: str) -> DatabaseUrl:
    """The URL with a driver that is installed, checked now so a missing one is a settings error before any
    thread starts (not a ModuleNotFoundError in the sink). Plain postgresql:// means psycopg2, which this
    project ships (SQLAlchemy 2.1 would read it as psycopg 3)."""
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    try:
        if url.drivername == "postgresql+psycopg2":
            import psycopg2  # noqa: F401 - imported to see that it can be
        elif url.drivername not in ("sqlite", "sqlite+pysqlite"):  # sqlite3 comes with Python
            _sqlalchemy_dialect(url, source).import_dbapi()
    except ImportError as exc:
        raise DatabaseConfigError(
            f"{source} uses {url.drivername}://, whose driver {_driver_of(url)} cannot be "
            f"imported ({exc}): {_install_hint(url, exc)}"
        ) from None
    return url


def _sqlalchemy_dialect(url: DatabaseUrl, source: str) -> Any:
    from sqlalchemy.exc import NoSuchModuleError

    try:
        return url.to_sqlalchemy().get_dialect()
    except NoSuchModuleError:
        raise DatabaseConfigError(
            f"{source} names {url.drivername}://, a database or driver SQLAlchemy does not know (expected e.g. "
            "postgresql://, mysql+pymysql:// or sqlite:///path)"
        ) from None


def _driver_of(url: DatabaseUrl) -> str:
    return url.get_driver_name() or _sqlalchemy_dialect(url, "").driver


def _install_hint(url: DatabaseUrl, exc: ImportError) -> str:
    """What to pip install for the URL's driver, and the easier driver for its database when there is one."""
    module = (getattr(exc, "name", None) or "").split(".")[0]
    package = DRIVER_PACKAGES.get(module, module)
    hint = f"pip install {package}" if package else "install its driver"
    backend = url.get_backend_name()
    easy = EASY_DRIVERS.get(backend)
    if easy and easy[0] != _driver_of(url):
        return f"pip install {easy[1]} and write {backend}+{easy[0]}://, or {hint}"
    return hint


# --- the connections a worker group shares ---------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table as the sink wants it: an integer `id` key counting up, then `columns` ((name, kind), kind
    one of "text", "double", "timestamp": without time zone), `required` ones NOT NULL, and a unique index
    on `unique_key`. A unique index never compares NULLs, so the rows where a column of `unique_key` is NULL
    are told apart by `fallback_key` instead: a unique index over those rows only."""

    name: str
    columns: tuple[tuple[str, str], ...]
    required: tuple[str, ...]
    unique_key: tuple[str, ...]
    fallback_key: tuple[str, ...] = ()

    @property
    def index_name(self) -> str:
        return f"{self.name}_{'_'.join(self.unique_key)}_key"

    @property
    def fallback_index_name(self) -> str:
        return f"{self.name}_{'_'.join(self.fallback_key)}_without_{'_'.join(self.nullable_key)}_key"

    @property
    def nullable_key(self) -> tuple[str, ...]:
        """The columns of the unique key that may be NULL."""
        return tuple(name for name in self.unique_key if name not in self.required)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


@dataclass(frozen=True)
class UniqueIndex:
    """A unique index of a table: its name, its columns, and the condition of the rows it covers (None: all)."""

    name: str
    columns: frozenset[str]
    where: str | None = None

    def covers(self, columns: tuple[str, ...], where: str | None = None) -> bool:
        """True when this index refuses every row one on `columns` over the rows matching `where` would."""
        if self.columns != set(columns):
            return False
        return self.where is None or (where is not None and _condition(self.where) == _condition(where))


def _condition(sql: str) -> str:
    """A condition as databases give it back (`(market_time IS NULL)`, quoted or not), in one spelling."""
    return " ".join(re.sub(r'[()"`]', " ", sql).lower().split())


def open_database(
    url: DatabaseUrl, *, pool_size: int = 5, connect_timeout_s: float = 5.0, statement_timeout_s: float = 30.0
) -> PostgresDatabase | SqlAlchemyDatabase:
    """PostgreSQL through psycopg2 directly; any other database through a SQLAlchemy engine."""
    if url.drivername == "postgresql+psycopg2":
        return PostgresDatabase(
            url, pool_size=pool_size, connect_timeout_s=connect_timeout_s, statement_timeout_s=statement_timeout_s
        )
    return SqlAlchemyDatabase(
        make_engine(
            url, pool_size=pool_size, connect_timeout_s=connect_timeout_s, statement_timeout_s=statement_timeout_s
        )
    )


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


class _Database:
    """What both kinds share, written over transaction() (a DBAPI cursor in a transaction)."""

    def transaction(self) -> Any:
        raise NotImplementedError

    def scalar(self, sql: str) -> Any:
        """The one value `sql` selects."""
        with self.transaction() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]

    def quote(self, name: str) -> str:
        """The identifier as the database needs it written."""
        raise NotImplementedError

    def unkeyed(self, table: Table) -> str:
        """The condition of the rows the unique key cannot tell apart: a column of it is NULL."""
        return " OR ".join(f"{self.quote(name)} IS NULL" for name in table.nullable_key)


class PostgresDatabase(_Database):
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
        unkeyed = _has_unkeyed(table, rows)
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


class SqlAlchemyDatabase(_Database):
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
        if self.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            insert = None
        records = [dict(zip(table.column_names, row)) for row in rows]
        if insert is None:
            batches = [(self._sa.insert(sa_table), records)]
        elif _has_unkeyed(table, rows):
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


def _has_unkeyed(table: Table, rows: list[list[Any]]) -> bool:
    """Whether a row of `rows` (values in the table's column order) has a NULL in the table's unique key."""
    if not table.fallback_key:
        return False
    positions = [table.column_names.index(name) for name in table.nullable_key]
    return any(row[position] is None for row in rows for position in positions)


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
