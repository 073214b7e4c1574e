"""The course's module path for the Yahoo stage (`location: workers.YahooFinanceWorkers`): the shipped classes,
whose params all have defaults, so the course's file needs none."""

from __future__ import annotations

from workers.yahoo_finance_worker import (
    YahooFinancePriceAsyncScheduler,
    YahooFinancePriceScheduler,
    YahooFinancePriceWorker,
)

__all__ = ["YahooFinancePriceAsyncScheduler", "YahooFinancePriceScheduler", "YahooFinancePriceWorker"]
