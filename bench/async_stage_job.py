"""Our asyncio Yahoo stage without the runner: YahooFinancePriceAsyncScheduler.process() awaited by plain
asyncio tasks, everything else as in bench/asyncio_job.py. For bench/async_http.py's CPU per request.

    python bench/async_stage_job.py WIKI_URL CHART_URL CONCURRENCY DATABASE_URL

Its CPU per request minus the plain script's is what the stage costs (HTTP policy, timeouts, lookup,
validation); the pipeline's minus this one's is what the runner costs (hand-offs, queues, the sink thread).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.asyncio_job import main as run_job  # noqa: E402
from bench.asyncio_job import symbols_of
from workers.yahoo_finance_worker import YahooFinancePriceAsyncScheduler  # noqa: E402


class Group:
    """What a worker sees of its group (core/run/group.py WorkerGroup): name, spec.instances, stop, resource."""

    def __init__(self, instances: int) -> None:
        self.name = "YahooFinanceWorker"
        self.spec = SimpleNamespace(name=self.name, instances=instances)
        self.stop = threading.Event()
        self.resources: dict[str, Any] = {}

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self.resources:
            self.resources[key] = factory()
        return self.resources[key]


async def fetch_all(wiki_url: str, chart_url: str, concurrency: int) -> list[tuple]:
    """Every symbol's record through our stage's process(), `concurrency` tasks on one session."""
    group = Group(concurrency)
    workers = [
        YahooFinancePriceAsyncScheduler(group=group, index=n, requests_per_second=0, chart_url=chart_url)
        for n in range(concurrency)
    ]
    page = await workers[0].aio_http.get(wiki_url, endpoint="wiki")  # the same session, as the plain script
    todo, rows = iter(symbols_of(page.body)), []

    async def run(worker: YahooFinancePriceAsyncScheduler) -> None:
        for symbol in todo:
            record = await worker.process(symbol)
            rows.append(tuple(record[key] for key in ("symbol", "price", "currency", "market_time", "extracted_time")))

    await asyncio.gather(*(run(worker) for worker in workers))
    await workers[0].aio_http.aclose()
    return [(s, p, c, m and m.replace(tzinfo=None), e.replace(tzinfo=None)) for s, p, c, m, e in rows]


if __name__ == "__main__":
    run_job(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], fetch=fetch_all)
