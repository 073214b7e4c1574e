"""What keeping the timeline costs (issue 18): the shipped pipeline with its asyncio Yahoo stage at 256 requests in
flight, 100 ms each, on a synthetic page of N symbols, with the timeline and without it (bench/no_timeline: a
sitecustomize that makes Timeline.add do nothing), in alternating order, each run its own process tree.

    .venv/bin/python bench/timeline_cost.py [--symbols 10000] [--concurrency 256] [--repeat 5]

Prints whole-process wall and CPU seconds (medians, and every run), and the CPU difference in per cent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.async_http import OURS, command  # noqa: E402
from bench.fast_sites import FastSites  # noqa: E402
from bench.fresh_database import ADMIN_URL, FreshDatabase  # noqa: E402
from bench.measure import run_measured  # noqa: E402

WITH, WITHOUT = "with the timeline", "without it"


def run_once(kept: bool, sites: FastSites, args: argparse.Namespace, workdir: Path) -> dict:
    """One measured run in a fresh database; asserts every row was stored."""
    with FreshDatabase(args.admin_url) as url:
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull}
        if not kept:
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bench" / "no_timeline"), str(ROOT)])
        page = sites.synthetic_url(args.symbols)
        result = run_measured(command(OURS, page, sites, args.concurrency, url, workdir / "stats.json"), env=env)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM prices")).scalar_one()
        engine.dispose()
    assert result["exit_code"] == 0 and stored == args.symbols, (result["exit_code"], stored)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    runs: dict[str, list[dict]] = {WITH: [], WITHOUT: []}
    with FastSites(latency_s=args.latency, max_symbols=args.symbols) as sites, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            for kept in (True, False) if round_ % 2 == 0 else (False, True):
                runs[WITH if kept else WITHOUT].append(run_once(kept, sites, args, Path(tmp)))
    print(f"\n{args.symbols} symbols, {args.concurrency} in flight, {args.latency * 1000:.0f} ms per request\n")
    print("| run | wall s | CPU s | all runs: wall/CPU |")
    print("|---|---:|---:|---|")
    for name, results in runs.items():
        every = ", ".join(f"{r['wall_s']:.2f}/{r['cpu_s']:.2f}" for r in results)
        wall = statistics.median(r["wall_s"] for r in results)
        cpu = statistics.median(r["cpu_s"] for r in results)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {every} |")
    with_cpu = statistics.median(r["cpu_s"] for r in runs[WITH])
    without_cpu = statistics.median(r["cpu_s"] for r in runs[WITHOUT])
    print(f"\nCPU with the timeline / without: {100 * (with_cpu / without_cpu - 1):+.1f}%")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
