"""What both kinds of database share (`BaseDatabase`), written over a DBAPI cursor in a transaction."""

from __future__ import annotations

from typing import Any

from core.storage.table import Table


class BaseDatabase:
    """What PostgresDatabase and SqlAlchemyDatabase share, written over transaction() (a DBAPI cursor in a
    transaction)."""

    def transaction(self) -> Any:
        """A context manager giving a DBAPI cursor in a transaction (each kind of database has its own)."""
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
