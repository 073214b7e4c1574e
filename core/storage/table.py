"""The table policy the sink writes by: `Table` (its columns, which are required, its unique key and the fallback
key for rows the unique key cannot tell apart), `UniqueIndex` as a database reports one, and `has_unkeyed`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


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


def has_unkeyed(table: Table, rows: list[list[Any]]) -> bool:
    """Whether a row of `rows` (values in the table's column order) has a NULL in the table's unique key."""
    if not table.fallback_key:
        return False
    positions = [table.column_names.index(name) for name in table.nullable_key]
    return any(row[position] is None for row in rows for position in positions)
