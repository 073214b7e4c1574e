"""The shipped workers, made to crash on purpose, for the fault tests (`location: crashing_workers`,
with tests/ on PYTHONPATH): in setup() (a resource that cannot be set up), in the middle of an item or of
a batch write (an instance ended by SystemExit, outside the per-item error handling), or sending on a
record the database refuses."""

from __future__ import annotations

from fixture_workers import CrashesInSetup

from core.storage.settings import database_url
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


class YahooExitsOnSymbol(YahooFinancePriceScheduler):
    """The real Yahoo stage, whose instance ends (SystemExit, as a careless sys.exit() would) in the middle
    of the item `exit_on`."""

    def __init__(self, *, exit_on: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.exit_on = exit_on

    def process(self, symbol: str):
        if symbol == self.exit_on:
            raise SystemExit(f"{self.name} exits in the middle of {symbol}")
        return super().process(symbol)


class YahooWrongType(YahooFinancePriceScheduler):
    """The real Yahoo stage, but the record of `bad` carries a price the database refuses (a text)."""

    def __init__(self, *, bad: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.bad = bad

    def process(self, symbol: str):
        record = super().process(symbol)
        if symbol == self.bad:
            record["price"] = "not a number"
        return record


class PostgresExitsWriting(PostgresMasterScheduler):
    """The real sink, whose instance ends (SystemExit) while it writes batch number `exit_on_batch`, or, with
    `exit_on_partial`, the first batch smaller than batch_size (the flush at the end)."""

    def __init__(self, *, exit_on_batch: int = 0, exit_on_partial: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.exit_on_batch = exit_on_batch
        self.exit_on_partial = exit_on_partial
        self.writes = 0

    def write_batch(self, items) -> None:
        self.writes += 1
        if self.writes == self.exit_on_batch or (self.exit_on_partial and len(items) < self.batch_size):
            raise SystemExit(f"{self.name} exits writing a batch of {len(items)}")
        super().write_batch(items)


class YahooKillsItsProcess(YahooFinancePriceScheduler):
    """The real Yahoo stage, whose whole worker process is killed (SIGKILL, as the OOM killer would) in the middle
    of the item `kill_on`; run it with `processes:`, or it takes the runner down with it."""

    def __init__(self, *, kill_on: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.kill_on = kill_on

    def process(self, symbol: str):
        if symbol == self.kill_on:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return super().process(symbol)
