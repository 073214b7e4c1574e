"""Which database the environment names: `database_url` (DATABASE_URL, else the POSTGRES_* variables, else a
SQLite file under the data folder), `login_user`, `settings_hint`, and the check that the URL's driver is installed,
saying what to pip install when it is not."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from core.base.paths import data_dir
from core.base.redact import register_secret
from core.storage.url import DatabaseConfigError, DatabaseUrl, parse_database_url

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
