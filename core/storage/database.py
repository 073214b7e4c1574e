"""Which kind of database the pipeline writes through: `open_database` gives PostgreSQL to psycopg2 directly
(`PostgresDatabase`, so a PostgreSQL run never imports SQLAlchemy, which costs about 0.1 s of CPU before the first
row) and SQLite or any other database SQLAlchemy knows to a SQLAlchemy engine (`SqlAlchemyDatabase`). Both offer
what the sink needs: a transaction, the table's shape, its unique keys, and a fast insert that skips rows already
stored."""

from __future__ import annotations

from core.storage.postgres import PostgresDatabase
from core.storage.sqlalchemy_db import SqlAlchemyDatabase, make_engine
from core.storage.url import DatabaseUrl


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
