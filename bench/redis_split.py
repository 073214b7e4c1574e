"""The shipped S&P 500 job split over three processes through Redis, next to one process with local queues.

    .venv/bin/python bench/redis_split.py [--latency 0.1] [--instances 16] [--repeat 3]

Every run is `python main.py` on pipelines/wiki_yahoo_scraper_pipeline.yaml changed only with --set: the
Wikipedia URL and the chart URL pointed at bench/fast_sites.py (the saved page; each price answered after
--latency seconds), `requests_per_second=0`, a fresh PostgreSQL database (bench/fresh_database.py). Layouts,
run interleaved (the order rotates each repeat), each checked for 503 rows in `prices`:

- one process, local queues, 3 × --instances Yahoo instances: the reference;
- one process, the two queues in Redis (`--set queues.*.backend=redis`, no --run-id): what Redis alone adds;
- split 3 × N: three processes with one --run-id, each running --instances Yahoo instances; A also runs the
  WikiWorker and PostgresWorker groups (`--only WikiWorker,YahooFinanceWorker,PostgresWorker`), B and C
  `--only YahooFinanceWorker`. The same 3 × N instances as the reference, spread over three processes;
- split as in docs/MACHINES.md: A `--only WikiWorker,PostgresWorker`, B and C `--only YahooFinanceWorker` with
  3 × N / 2 instances each (the same total).

The three processes of a split are launched together. `wall` is from launching to the last one's exit (every
process measured by bench/measure.py, which also gives CPU: of each process and everything it started, summed);
`run` is the run's own duration_s from the process that runs the sink (A). The fake server's CPU is shown
apart. Redis keys of each split run are deleted after it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench.fast_sites import FastSites  # noqa: E402
from bench.fresh_database import ADMIN_URL, FreshDatabase  # noqa: E402
from bench.measure import run_measured  # noqa: E402
from bench.redis_hop import delete_keys  # noqa: E402

PIPELINE = ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"
REDIS_QUEUES = ["--set", "queues.SymbolQueue.backend=redis", "--set", "queues.PostgresUploading.backend=redis"]
ALL_GROUPS = "WikiWorker,YahooFinanceWorker,PostgresWorker"
LOCAL = "one process, local queues"
SOLO_REDIS = "one process, queues in Redis"
SPLIT_EVEN = "split: A Wiki+Yahoo+Postgres, B, C Yahoo"
SPLIT_README = "split: A Wiki+Postgres, B, C Yahoo"


def base_command(sites: FastSites, workdir: Path, name: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "main.py"),
        "--pipeline",
        str(PIPELINE),
        "--quiet",
        "--log-level",
        "WARNING",
        "--stats-json",
        str(workdir / f"{name}.json"),
        "--set",
        f"workers.WikiWorker.input_values=[{sites.wiki_url}]",
        "--set",
        "workers.YahooFinanceWorker.params.requests_per_second=0",
        "--set",
        f"workers.YahooFinanceWorker.params.chart_url={sites.chart_url}",
    ]


def processes(layout: str, instances: int, run_id: str) -> dict[str, list[str]]:
    """Each process of `layout`: its name and its arguments after the base command."""

    def yahoo(count: int) -> list[str]:
        return ["--set", f"workers.YahooFinanceWorker.instances={count}"]

    joined = ["--run-id", run_id, *REDIS_QUEUES]
    if layout == LOCAL:
        return {"A": yahoo(3 * instances)}
    if layout == SOLO_REDIS:
        return {"A": [*yahoo(3 * instances), *REDIS_QUEUES]}
    if layout == SPLIT_EVEN:
        return {
            "A": [*yahoo(instances), *joined, "--only", ALL_GROUPS],
            "B": [*yahoo(instances), *joined, "--only", "YahooFinanceWorker"],
            "C": [*yahoo(instances), *joined, "--only", "YahooFinanceWorker"],
        }
    half = 3 * instances // 2
    return {
        "A": [*joined, "--only", "WikiWorker,PostgresWorker"],
        "B": [*yahoo(half), *joined, "--only", "YahooFinanceWorker"],
        "C": [*yahoo(3 * instances - half), *joined, "--only", "YahooFinanceWorker"],
    }


def rows_stored(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM prices")).scalar_one()
    finally:
        engine.dispose()


def run_layout(layout: str, sites: FastSites, instances: int, workdir: Path, admin_url: str, redis_url: str) -> dict:
    """Launch the layout's processes together; wall to the last exit, CPU summed, the sink process's run time."""
    run_id = f"bench-split-{uuid.uuid4().hex[:8]}"
    with FreshDatabase(admin_url) as database_url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DATA_DIR": str(workdir),
            "ENV_FILE": os.devnull,
            "REDIS_URL": redis_url,
        }
        results: dict[str, dict] = {}

        def launch(name: str, extra: list[str], started: float) -> None:
            result = run_measured([*base_command(sites, workdir, name), *extra], env=env, timeout_s=300)
            results[name] = {**result, "end": time.monotonic() - started}

        server_cpu = sites.cpu_s()
        started = time.monotonic()
        threads = [
            threading.Thread(target=launch, args=(name, extra, started))
            for name, extra in processes(layout, instances, run_id).items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        server_cpu = sites.cpu_s() - server_cpu
        stored = rows_stored(database_url)
    reports = {name: json.loads((workdir / f"{name}.json").read_text()) for name in results}
    if reports["A"].get("run"):  # a run in Redis (without --run-id, under an id of its own)
        delete_keys(redis_url, f"yp:{PIPELINE.stem}:{reports['A']['run']['run_id']}:*")
    exits = {name: result["exit_code"] for name, result in results.items()}
    assert stored == 503 and all(code == 0 for code in exits.values()), (layout, stored, exits)
    yahoo = {
        name: report["groups"].get("YahooFinanceWorker", {}).get("processed", 0)
        for name, report in reports.items()
        if "YahooFinanceWorker" in report.get("groups", {})
    }
    return {
        "wall_s": max(result["end"] for result in results.values()),
        "cpu_s": sum(result["cpu_s"] for result in results.values()),
        "run_s": reports["A"]["duration_s"],
        "server_cpu_s": server_cpu,
        "rows": stored,
        "yahoo": yahoo,
        "walls": {name: round(result["end"], 2) for name, result in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per price request (default 0.1)")
    parser.add_argument("--instances", type=int, default=16, help="Yahoo instances per process of a split")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each layout, interleaved; medians shown")
    parser.add_argument("--layouts", nargs="+", default=[LOCAL, SOLO_REDIS, SPLIT_EVEN, SPLIT_README])
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {layout: [] for layout in args.layouts}
    loads = []
    with FastSites(latency_s=args.latency) as sites, tempfile.TemporaryDirectory() as workdir:
        for repeat in range(args.repeat):
            shift = repeat % len(args.layouts)
            for layout in args.layouts[shift:] + args.layouts[:shift]:
                loads.append(os.getloadavg()[0])
                result = run_layout(layout, sites, args.instances, Path(workdir), args.admin_url, args.redis_url)
                runs[layout].append(result)
                print(
                    f"  {layout}: wall {result['wall_s']:.2f}s (per process {result['walls']}), run "
                    f"{result['run_s']:.2f}s, CPU {result['cpu_s']:.2f}s, server CPU {result['server_cpu_s']:.2f}s, "
                    f"Yahoo per process {result['yahoo']}, rows {result['rows']}, load {loads[-1]:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    reference = statistics.median(r["wall_s"] for r in runs[args.layouts[0]])
    reference_run = statistics.median(r["run_s"] for r in runs[args.layouts[0]])
    n = args.instances
    print(
        f"503 prices, {args.latency:g} s per request, {3 * n} Yahoo instances in all; medians of {args.repeat}; "
        f"ideal 503 × {args.latency:g} / {3 * n} = {503 * args.latency / (3 * n):.2f}s; load average (1 min) "
        f"during the runs {min(loads):.2f}–{max(loads):.2f}\n"
    )
    print(
        f"| layout | Yahoo instances | wall, launch to last exit | ÷ {args.layouts[0]} | run (sink process's "
        "duration_s) | ÷ | CPU, all processes | fake server CPU | prices per process (first run) | all runs: wall |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for layout in args.layouts:
        results = runs[layout]
        wall = statistics.median(r["wall_s"] for r in results)
        run = statistics.median(r["run_s"] for r in results)
        cpu = statistics.median(r["cpu_s"] for r in results)
        server = statistics.median(r["server_cpu_s"] for r in results)
        spread = ", ".join(f"{name} {count}" for name, count in sorted(results[0]["yahoo"].items()))
        shape = {
            LOCAL: f"{3 * n}",
            SOLO_REDIS: f"{3 * n}",
            SPLIT_EVEN: f"{n} + {n} + {n}",
            SPLIT_README: f"0 + {3 * n // 2} + {3 * n - 3 * n // 2}",
        }[layout]
        every = ", ".join(f"{r['wall_s']:.2f}" for r in results)
        print(
            f"| {layout} | {shape} | {wall:.2f}s | {wall / reference:.2f}× | {run:.2f}s | {run / reference_run:.2f}× "
            f"| {cpu:.2f}s | {server:.2f}s | {spread} | {every} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
