"""A brand-new PostgreSQL database for one measurement, dropped afterwards."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


class FreshDatabase:
    """Creates a database on enter and yields its URL; drops it (and its connections) on exit."""

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = f"bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        return self.admin.url.set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{self.name}" WITH (FORCE)'))
        self.admin.dispose()
