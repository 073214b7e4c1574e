"""Memory per request in flight: the shipped pipeline with its asyncio Yahoo stage holding N requests open at
once, against the plain asyncio + aiohttp script (bench/asyncio_job.py) doing the same.

    .venv/bin/python bench/async_memory.py [--concurrency 10 1000 2000] [--latency 2] [--repeat 3]

Each run fetches a synthetic constituents page of N symbols (bench/fast_sites.py /synthetic/N) with N
concurrent requests (`instances` = N for ours), every chart answered after --latency seconds, so all N
requests are in flight together for that long. Peak RSS (VmHWM) of the process is read from /proc every 20 ms
by bench/measure.py; a fresh PostgreSQL database per run, its N rows checked. MiB per 1000 requests in
flight = (peak at N − peak at the smallest N) / (N − smallest N) × 1000: what the requests cost, with the
interpreter, imports and the pipeline's fixed parts cancelled out. Runs alternate between the two; medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench.async_http import command  # noqa: E402
from bench.fast_sites import FastSites  # noqa: E402
from bench.fresh_database import ADMIN_URL, FreshDatabase  # noqa: E402
from bench.measure import run_measured  # noqa: E402

IMPLS = ("ours", "plain asyncio")


def run_once(impl: str, sites: FastSites, concurrency: int, workdir: Path, admin_url: str) -> dict:
    """One run: the peak RSS of the main process (MiB), wall and CPU; asserts every row was stored."""
    with FreshDatabase(admin_url) as url:
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull}
        argv = command(impl, sites.synthetic_url(concurrency), sites, concurrency, url, workdir / "stats.json")
        if impl == "ours":  # a page of 10 symbols is a broken page to the shipped source, unless told otherwise
            argv += ["--set", "workers.WikiWorker.params.min_symbols=1"]
        result = run_measured(argv, env=env, sample_rss_s=0.02)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM prices")).scalar_one()
        engine.dispose()
    assert result["exit_code"] == 0 and stored == concurrency, (impl, concurrency, result["exit_code"], stored)
    main_pid = min(result["peaks"], key=int)  # the command's own process was started first
    return {
        "peak_mib": result["peaks"][main_pid]["peak_rss_kib"] / 1024,
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 1000, 2000])
    parser.add_argument("--latency", type=float, default=2.0, help="seconds before each chart answer")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    runs: dict[tuple[str, int], list[dict]] = {}
    with (
        FastSites(latency_s=args.latency, max_symbols=max(args.concurrency)) as sites,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for round_ in range(args.repeat):
            order = IMPLS if round_ % 2 == 0 else IMPLS[::-1]
            for concurrency in args.concurrency:
                for impl in order:
                    result = run_once(impl, sites, concurrency, Path(tmp), args.admin_url)
                    runs.setdefault((impl, concurrency), []).append(result)
                    print(
                        f"  {impl} at {concurrency}: peak {result['peak_mib']:.1f} MiB, wall {result['wall_s']:.2f}s",
                        file=sys.stderr,
                        flush=True,
                    )
    base = min(args.concurrency)
    print(f"\nchart answers after {args.latency:g} s; medians of {args.repeat}\n")
    print("| requests in flight | impl | peak RSS MiB (median) | all runs | MiB per 1000 in flight | wall s | CPU s |")
    print("|---:|---|---:|---|---:|---:|---:|")
    for concurrency in args.concurrency:
        for impl in IMPLS:
            results = runs[(impl, concurrency)]
            peak = statistics.median(r["peak_mib"] for r in results)
            base_peak = statistics.median(r["peak_mib"] for r in runs[(impl, base)])
            per = "–" if concurrency == base else f"{(peak - base_peak) / (concurrency - base) * 1000:.1f}"
            every = ", ".join(f"{r['peak_mib']:.1f}" for r in results)
            print(
                f"| {concurrency} | {impl} | {peak:.1f} | {every} | {per} "
                f"| {statistics.median(r['wall_s'] for r in results):.2f} "
                f"| {statistics.median(r['cpu_s'] for r in results):.2f} |",
                flush=True,
            )
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
