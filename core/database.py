"""Which database the pipeline writes to, and the one engine per worker group that talks to it."""
from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from core.paths import PROJECT_DIR, data_dir  # noqa: F401 - where older code and tests import them from
from core.problems import SettingsError
from core.redact import register_secret

SQLITE_FILE = "prices.sqlite3"
POSTGRES_VARS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_PORT")
# The pip package that provides a driver's module, where the names differ.
DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]",
                   "mysql": "mysql-connector-python", "cx_Oracle": "cx_Oracle"}
# A driver per database that installs from a wheel, without a compiler or client libraries.
EASY_DRIVERS = {"mysql": ("pymysql", "pymysql"), "mariadb": ("pymysql", "pymysql"),
                "postgresql": ("psycopg2", "psycopg2-binary"), "mssql": ("pymssql", "pymssql")}


class DatabaseConfigError(SettingsError):
    """The database settings in the environment cannot be used (the message holds no password)."""


def database_url(env: Mapping[str, str] = os.environ) -> URL:
    """DATABASE_URL if set, else the POSTGRES_* variables (an empty POSTGRES_USER is the login user, as for
    psql), else a SQLite file under the data folder."""
    raw = env.get("DATABASE_URL", "").strip()
    if raw:
        url, source = _parse_database_url(raw), "DATABASE_URL"
    elif any(env.get(name) for name in POSTGRES_VARS):
        port = env.get("POSTGRES_PORT") or None
        if port is not None and not port.isdigit():
            raise DatabaseConfigError(f"POSTGRES_PORT must be a number, got {port!r}")
        url = URL.create(
            "postgresql+psycopg2", username=env.get("POSTGRES_USER") or login_user(env),
            password=env.get("POSTGRES_PASSWORD") or None, host=env.get("POSTGRES_HOST") or "localhost",
            port=int(port) if port else None, database=env.get("POSTGRES_DB") or "postgres",
        )
        source = "the POSTGRES_* settings"
    else:
        url, source = URL.create("sqlite", database=str(data_dir(env) / SQLITE_FILE)), "the SQLite default"
    register_secret(url.password if isinstance(url.password, str) else None)
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
    where = (f"{env.get('POSTGRES_HOST') or 'localhost'}:{env.get('POSTGRES_PORT') or 5432}, "
             f"database {env.get('POSTGRES_DB') or 'postgres'}")
    return "; ".join(said + [f"set {' and '.join(to_set)} (in .env.local or the environment) to a role of the server "
                             f"at {where} (POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB), or set DATABASE_URL instead"])


def _parse_database_url(raw: str) -> URL:
    """Parse DATABASE_URL, masking its password first so no error below can print it."""
    userinfo = raw.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[0]
    register_secret(userinfo.partition(":")[2] or None)
    if "@" in userinfo:
        raise DatabaseConfigError("DATABASE_URL has an '@' in its user name or password: write it as %40")
    try:
        return make_url(raw)
    except (ArgumentError, ValueError):
        raise DatabaseConfigError("DATABASE_URL is not a database URL (expected e.g. "
                                  "postgresql://user:password@host:5432/dbname)") from None


def describe(url: URL) -> str:
    """The URL with its password masked, for logs."""
    return url.render_as_string(hide_password=True)


def make_engine(url: URL, *, pool_size: int = 5, connect_timeout_s: float = 5.0,
                statement_timeout_s: float = 30.0) -> Engine:
    """An engine with pre-ping (a restarted server costs one retry, not an error), a connect timeout, and
    on PostgreSQL a statement timeout and TCP keepalives, so no write can wait forever."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": statement_timeout_s}  # how long a write waits for another writer's lock
    elif backend == "postgresql":
        options = f"{os.environ.get('PGOPTIONS', '')} -c statement_timeout={int(statement_timeout_s * 1000)}"
        connect_args = {
            "connect_timeout": max(int(connect_timeout_s), 1), "application_name": "yaml-pipeline",
            "options": options.strip(),  # given here, libpq would ignore PGOPTIONS: keep the user's too
            # A server that vanished without closing the connection is noticed in about 20 s, not hours.
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2,
        }
    else:
        connect_args = {}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=2,
                            connect_args=connect_args)


def _with_installed_driver(url: URL, source: str) -> URL:
    """The URL with a driver that is installed, checked now so a missing one is a settings error before any
    thread starts (not a ModuleNotFoundError in the sink). Plain postgresql:// means psycopg2, which this
    project ships (SQLAlchemy 2.1 would read it as psycopg 3)."""
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise DatabaseConfigError(
            f"{source} names {url.drivername}://, a database or driver SQLAlchemy does not know (expected e.g. "
            "postgresql://, mysql+pymysql:// or sqlite:///path)") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise DatabaseConfigError(f"{source} uses {url.drivername}://, whose driver {dialect.driver} cannot be "
                                  f"imported ({exc}): {_install_hint(url, exc)}") from None
    return url


def _install_hint(url: URL, exc: ImportError) -> str:
    """What to pip install for the URL's driver, and the easier driver for its database when there is one."""
    module = (getattr(exc, "name", None) or "").split(".")[0]
    package = DRIVER_PACKAGES.get(module, module)
    hint = f"pip install {package}" if package else "install its driver"
    backend = url.get_backend_name()
    easy = EASY_DRIVERS.get(backend)
    if easy and easy[0] != url.get_driver_name():
        return f"pip install {easy[1]} and write {backend}+{easy[0]}://, or {hint}"
    return hint
