"""End-to-end benchmark: the shipped pipeline against a local server that answers each price request after
a set latency, PostgreSQL sink; wall time for several Yahoo instance counts next to the ideal
(503 x latency / instances) and next to the same job written plainly with pypeln's thread stages.

    .venv/bin/python bench/end_to_end.py [--latency 0.1] [--instances 1 2 4 8 16 32 64]

`main.py` runs as a user would (a subprocess, the shipped file, values changed with --set only). Its time is
the run's own `duration_s` from --stats-json (connect, create table, fetch, store); the process time, with
Python's start and imports, is shown too. pypeln runs bench/pypeln_job.py the same way, in its own process,
timed from before its engine is made to after the rows are committed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sites import FakeSites  # noqa: E402

from bench.fresh_database import ADMIN_URL, FreshDatabase  # noqa: E402

PIPELINE = ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"


def run_main(sites: FakeSites, instances: int, database_url: str, workdir: Path) -> tuple[float, float]:
    """(run duration from the stats, process wall time) of `python main.py` with `instances` Yahoo workers."""
    stats = workdir / f"stats-{instances}.json"
    command = [
        sys.executable,
        str(ROOT / "main.py"),
        "--pipeline",
        str(PIPELINE),
        "--quiet",
        "--log-level",
        "WARNING",
        "--stats-json",
        str(stats),
        "--set",
        f"workers.WikiWorker.input_values=[{sites.wiki_url}]",
        "--set",
        f"workers.YahooFinanceWorker.instances={instances}",
        "--set",
        "workers.YahooFinanceWorker.params.requests_per_second=0",
        "--set",
        f"workers.YahooFinanceWorker.params.chart_url={sites.chart_url}",
    ]
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull}
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, timeout=600, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    report = json.loads(stats.read_text())
    assert report["groups"]["PostgresWorker"]["stored"] == 503, report
    return report["duration_s"], wall


def run_pypeln(sites: FakeSites, instances: int, database_url: str) -> tuple[float, float]:
    """(run duration, process wall time) of bench/pypeln_job.py: the same job, plainly, in its own process."""
    command = [
        sys.executable,
        str(ROOT / "bench" / "pypeln_job.py"),
        sites.wiki_url,
        sites.chart_url,
        str(instances),
        database_url,
    ]
    started = time.perf_counter()
    out = subprocess.run(command, check=True, timeout=600, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    return json.loads(out.strip().splitlines()[-1])["duration_s"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per price request (default 0.1)")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; medians shown")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    print(
        f"| Yahoo instances | ideal 503×{args.latency:g}s/n | main.py run | ratio to ideal | pypeln run "
        f"| main.py / pypeln | process: main.py, pypeln | all runs: main.py / pypeln |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    with FakeSites(latency_s=args.latency) as sites, tempfile.TemporaryDirectory() as workdir:
        for instances in args.instances:
            ideal = 503 * args.latency / instances
            ours, walls, plain = [], [], []
            for _ in range(args.repeat if instances >= 8 else 1):  # the slow ones vary little
                with FreshDatabase(args.admin_url) as url:
                    run, wall = run_main(sites, instances, url, Path(workdir))
                    ours.append(run)
                    walls.append(wall)
                with FreshDatabase(args.admin_url) as url:
                    plain.append(run_pypeln(sites, instances, url))
            plain, plain_walls = [p for p, _ in plain], [w for _, w in plain]
            run, wall, other = statistics.median(ours), statistics.median(walls), statistics.median(plain)
            other_wall = statistics.median(plain_walls)
            pairs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(ours, plain, strict=True))
            print(
                f"| {instances} | {ideal:.2f}s | {run:.2f}s | {run / ideal:.2f}× | {other:.2f}s | {run / other:.2f} "
                f"| {wall:.2f}s, {other_wall:.2f}s | {pairs} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
