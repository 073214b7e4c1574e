"""The shipped workers, made to crash on purpose, for the fault tests (`location: crashing_workers`,
with tests/ on PYTHONPATH). Each crashes in setup(), outside the per-item error handling, which is
where a real worker crashes when a resource it needs cannot be set up."""
from __future__ import annotations

from typing import Any

from core.database import database_url
from workers.postgres_worker import PostgresMasterScheduler
from workers.yahoo_finance_worker import YahooFinancePriceScheduler


class PostgresCrashingInSetup(PostgresMasterScheduler):
    """The real sink (it opens the database and creates the table), then every instance crashes.

    The error names the database URL with its password, as a careless error message would:
    the log must still not show the password."""

    def setup(self) -> None:
        url = database_url().render_as_string(hide_password=False)
        raise RuntimeError(f"cannot set up the writer for {url}")


class YahooCrashingInSetup(YahooFinancePriceScheduler):
    """The real Yahoo stage; instance `crash_index` crashes in setup(), or every instance when it is -1."""

    def __init__(self, *, crash_index: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash_index = crash_index

    def setup(self) -> None:
        if self.crash_index in (-1, self.index):
            raise RuntimeError(f"{self.name}: cannot set up")
        super().setup()
