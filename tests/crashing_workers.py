"""The shipped workers, made to crash on purpose, for the fault tests (`location: crashing_workers`,
with tests/ on PYTHONPATH). Each crashes in setup(), outside the per-item error handling, which is
where a real worker crashes when a resource it needs cannot be set up."""
from __future__ import annotations

from core.database import database_url
from fixture_workers import CrashesInSetup
from workers.postgres_worker import PostgresMasterScheduler
from workers.yahoo_finance_worker import YahooFinancePriceScheduler


class PostgresCrashingInSetup(PostgresMasterScheduler):
    """The real sink (it opens the database and creates the table), then every instance crashes.

    The error names the database URL with its password, as a careless error message would:
    the log must still not show the password."""

    def setup(self) -> None:
        url = database_url().render_as_string(hide_password=False)
        raise RuntimeError(f"cannot set up the writer for {url}")


class YahooCrashingInSetup(CrashesInSetup, YahooFinancePriceScheduler):
    """The real Yahoo stage; instance `crash_index` crashes in setup(), or every instance when it is -1."""
