"""Async benchmark: the shipped pipeline with its asyncio Yahoo stage against the same job as a plain
asyncio + aiohttp script (bench/asyncio_job.py) and in pypeln (bench/pypeln_job.py), 100 ms per price request.

    .venv/bin/python bench/async_http.py [--concurrency 64 128 256] [--repeat 3] [--big 3521] [--skip-wall | --skip-cpu]

*ours* is the shipped pipeline with the one-line switch (`class: YahooFinancePriceAsyncScheduler`); *ours, all
async* also runs the Wikipedia source on asyncio (`WikiWorkerAsyncScheduler`), so the run never loads requests.
Every run is its own process tree under bench/measure.py: wall seconds of the whole process (Python's start
and imports included) and CPU seconds (user + sys) of it and every process it started; a fresh PostgreSQL
database each, its row count checked. The candidates alternate (the order rotates each round); medians are shown.

Table 2 is CPU per request: each implementation runs a synthetic page of 503 symbols and one of --big
symbols back to back; (CPU of the big run - CPU of the small one) / (big - 503) is the CPU each extra
request costs, start-up and imports cancelled out (the sink's per-row work included, for all). Besides ours
and the plain script it shows our Yahoo stage awaited by plain tasks (bench/async_stage_job.py), which
splits our extra CPU into what the stage costs and what the runner costs.
The local server (bench/fast_sites.py) runs in its own process; its CPU per run is shown so it can be seen
not to be the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fast_sites import FastSites  # noqa: E402
from bench.fresh_database import ADMIN_URL, FreshDatabase  # noqa: E402
from bench.measure import run_measured  # noqa: E402

PIPELINE = ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"
SYMBOLS = 503
STAGE = "our stage, plain tasks"  # bench/async_stage_job.py: the Yahoo stage without the runner
OURS = "ours"  # the shipped pipeline with the one-line switch: class YahooFinancePriceAsyncScheduler
ALL_ASYNC = "ours, all async"  # and WikiWorkerAsyncScheduler too: no stage loads requests


def command(
    impl: str, page_url: str, sites: FastSites, concurrency: int, database_url: str, stats_path: Path
) -> list[str]:
    """The command line of one implementation for one run."""
    if impl in (OURS, ALL_ASYNC):
        every_stage = ["--set", "workers.WikiWorker.class=WikiWorkerAsyncScheduler"] if impl == ALL_ASYNC else []
        return [
            sys.executable,
            str(ROOT / "main.py"),
            "--pipeline",
            str(PIPELINE),
            "--quiet",
            *every_stage,
            "--log-level",
            "WARNING",
            "--stats-json",
            str(stats_path),
            "--set",
            f"workers.WikiWorker.input_values=[{page_url}]",
            "--set",
            "workers.YahooFinanceWorker.class=YahooFinancePriceAsyncScheduler",
            "--set",
            f"workers.YahooFinanceWorker.instances={concurrency}",
            "--set",
            "workers.YahooFinanceWorker.params.requests_per_second=0",
            "--set",
            f"workers.YahooFinanceWorker.params.chart_url={sites.chart_url}",
        ]
    script = {"plain asyncio": "asyncio_job.py", "pypeln": "pypeln_job.py", STAGE: "async_stage_job.py"}[impl]
    return [sys.executable, str(ROOT / "bench" / script), page_url, sites.chart_url, str(concurrency), database_url]


def run_once(
    impl: str, page_url: str, rows: int, sites: FastSites, concurrency: int, workdir: Path, admin_url: str
) -> dict:
    """One measured run in a fresh database; asserts every row was stored."""
    stats_path = workdir / "stats.json"
    with FreshDatabase(admin_url) as url:
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull}
        server_before, counts_before = sites.cpu_s(), sites.counts()
        result = run_measured(command(impl, page_url, sites, concurrency, url, stats_path), env=env)
        result["server_cpu_s"] = sites.cpu_s() - server_before
        counts = sites.counts()
        result["connections"] = counts["connections"] - counts_before["connections"] - 1  # -1: /stats
        result["requests"] = counts["requests"] - counts_before["requests"]
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM prices")).scalar_one()
        engine.dispose()
    assert result["exit_code"] == 0 and stored == rows, (impl, result["exit_code"], stored)
    if impl in (OURS, ALL_ASYNC):
        result["run_s"] = json.loads(stats_path.read_text())["duration_s"]
    else:  # the scripts print their own duration, from before the table is made to after the commit
        result["run_s"] = json.loads(result["stdout"].strip().splitlines()[-1])["duration_s"]
    return result


def median(runs: list[dict], key: str) -> float:
    """The median of `key` over `runs`."""
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", type=int, default=3521, help="symbols of the big page for CPU per request")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--skip-wall", action="store_true", help="only the CPU-per-request table")
    parser.add_argument("--skip-cpu", action="store_true", help="only the wall table")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with FastSites(latency_s=args.latency, max_symbols=args.big) as sites, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_wall:
            wall_table(sites, workdir, args)
        if not args.skip_cpu:
            cpu_table(sites, workdir, args)
    print(f"load average at end: {os.getloadavg()}")


def rotations(impls: list[str], round_: int) -> list[str]:
    """`impls` rotated by `round_`, so no one always goes first."""
    shift = round_ % len(impls)
    return impls[shift:] + impls[:shift]


def wall_table(sites: FastSites, workdir: Path, args: argparse.Namespace) -> None:
    """Whole-process wall and CPU seconds of the three implementations on the saved 503-symbol page."""
    impls = [OURS, ALL_ASYNC, "plain asyncio", "pypeln"]
    print(
        "\n| concurrency | impl | wall s | CPU s | wall / plain | CPU / plain | own clock s | all runs: wall/CPU "
        "| server CPU s |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|")
    for concurrency in args.concurrency:
        runs: dict[str, list[dict]] = {impl: [] for impl in impls}
        for round_ in range(args.repeat):
            for impl in rotations(impls, round_):
                runs[impl].append(run_once(impl, sites.wiki_url, SYMBOLS, sites, concurrency, workdir, args.admin_url))
        plain_wall, plain_cpu = median(runs["plain asyncio"], "wall_s"), median(runs["plain asyncio"], "cpu_s")
        for impl in impls:
            wall, cpu = median(runs[impl], "wall_s"), median(runs[impl], "cpu_s")
            every = ", ".join(f"{r['wall_s']:.2f}/{r['cpu_s']:.2f}" for r in runs[impl])
            print(
                f"| {concurrency} | {impl} | {wall:.2f} | {cpu:.2f} | {wall / plain_wall:.2f}× | {cpu / plain_cpu:.2f}× "
                f"| {median(runs[impl], 'run_s'):.2f} | {every} | {median(runs[impl], 'server_cpu_s'):.2f} |",
                flush=True,
            )
    print(f"load average: {os.getloadavg()}", flush=True)


def cpu_table(sites: FastSites, workdir: Path, args: argparse.Namespace) -> None:
    """CPU per request: the slope between a 503- and a big synthetic page, per implementation."""
    impls = [OURS, ALL_ASYNC, STAGE, "plain asyncio"]
    print(f"\n| concurrency | impl | CPU µs per request | all runs | CPU s at {SYMBOLS} / {args.big} symbols |")
    print("|---:|---|---:|---|---|")
    for concurrency in args.concurrency:
        slopes: dict[str, list[float]] = {impl: [] for impl in impls}
        cpus: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.repeat):
            for impl in rotations(impls, round_):
                for symbols in (SYMBOLS, args.big):
                    run = run_once(
                        impl, sites.synthetic_url(symbols), symbols, sites, concurrency, workdir, args.admin_url
                    )
                    cpus.setdefault((impl, symbols), []).append(run["cpu_s"])
                small, big = cpus[impl, SYMBOLS][-1], cpus[impl, args.big][-1]
                slopes[impl].append((big - small) / (args.big - SYMBOLS) * 1e6)
        for impl in impls:
            print(
                f"| {concurrency} | {impl} | {statistics.median(slopes[impl]):.0f} "
                f"| {', '.join(f'{v:.0f}' for v in slopes[impl])} "
                f"| {statistics.median(cpus[impl, SYMBOLS]):.2f} / {statistics.median(cpus[impl, args.big]):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
