"""A database URL, read without SQLAlchemy: `DatabaseUrl` (SQLAlchemy's attribute names), `parse_database_url`,
`describe` for logs, and `DatabaseConfigError` for settings that cannot be used."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from core.base.redact import register_secret
from core.pipeline.problems import SettingsError

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
        host, colon_before_port, port = hostport.partition(":")
        has_port = bool(colon_before_port)
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
