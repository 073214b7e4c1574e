"""Processes benchmark: a CPU-bound stage (pure Python, about 20 ms an item, 200 items) in 2 worker
processes against the same stage as 2 threads, and against concurrent.futures.ProcessPoolExecutor(2).

    .venv/bin/python bench/processes_cpu.py [--items 200] [--item-ms 20] [--repeat 3]

Source (CountSource, in the main process) -> Spin (bench/cpu_workers.py) -> Discard. Each run is `main.py`
in its own process tree under bench/measure.py (wall of the whole process, CPU of it and every descendant,
the forkserver's children included); the run's own clock (stats duration_s) is shown too. The references
are bench/pool_job.py: ProcessPoolExecutor(2).map over the same items and function, and two bare processes
that split the items and communicate nothing (the most 2 cores give at the machine's current load; on a
shared machine that is well under 2x). The order rotates each round; medians are shown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu_workers import spin  # noqa: E402
from bench.measure import run_measured  # noqa: E402

PIPELINE = """\
queues:
  - {{name: Items, maxsize: 1000}}
  - {{name: Results, maxsize: 1000}}
workers:
  - {{name: Source, location: bench.noop_workers, class: CountSource, input_values: [{items}], output_queues: [Items]}}
  - {{name: Spin, location: bench.cpu_workers, class: Spin, instances: {instances}, processes: {processes},
     input_queue: Items, output_queues: [Results], params: {{loops: {loops}}}}}
  - {{name: Sink, location: bench.noop_workers, class: Discard, input_queue: Results}}
"""
MODES = {  # label: (instances, processes)
    "processes: 2 (instances 1)": (1, 2),
    "threads: instances 2": (2, 0),
    "one thread (instances 1)": (1, 0),
}
POOL = "ProcessPoolExecutor(2)"
BARE = "bare: 2 processes, half the items each, no IPC"


def calibrate_loops(item_ms: float) -> int:
    """Loops of spin() that take `item_ms` here (median of 5 timings of 100,000 loops)."""
    median_s = statistics.median(_timed(100_000) for _ in range(5))
    return int(100_000 * item_ms / 1000 / median_s)


def _timed(loops: int) -> float:
    started = time.perf_counter()
    spin(1, loops)
    return time.perf_counter() - started


def run_pipeline(instances: int, processes: int, items: int, loops: int, workdir: Path) -> dict:
    """One measured `main.py` run of Source -> Spin -> Discard; with its own clock."""
    path = workdir / f"spin-{instances}-{processes}.yaml"
    path.write_text(PIPELINE.format(items=items, instances=instances, processes=processes, loops=loops))
    stats = workdir / "stats.json"
    command = [
        sys.executable,
        str(ROOT / "main.py"),
        "--pipeline",
        str(path),
        "--quiet",
        "--log-level",
        "WARNING",
        "--stats-json",
        str(stats),
    ]
    env = {**os.environ, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull}
    result = run_measured(command, env=env)
    report = json.loads(stats.read_text())
    assert result["exit_code"] == 0 and report["groups"]["Sink"]["processed"] == items, report
    return {**result, "run_s": report["duration_s"]}


def run_reference(mode: str, items: int, loops: int) -> dict:
    """One measured run of bench/pool_job.py in `mode` (pool or bare); with its own clock."""
    result = run_measured([sys.executable, str(ROOT / "bench" / "pool_job.py"), mode, str(items), str(loops)])
    return {**result, "run_s": json.loads(result["stdout"].strip().splitlines()[-1])["duration_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--item-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    loops = calibrate_loops(args.item_ms)
    print(
        f"load average at start: {os.getloadavg()}; {loops:,} loops ≈ {args.item_ms:g} ms an item; "
        f"{args.items} items = {args.items * args.item_ms / 1000:.1f} s of CPU"
    )
    labels = list(MODES) + [POOL, BARE]
    runs: dict[str, list[dict]] = {label: [] for label in labels}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            shift = round_ % len(labels)
            for label in labels[shift:] + labels[:shift]:  # rotated, so no one always goes first
                if label in MODES:
                    runs[label].append(run_pipeline(*MODES[label], args.items, loops, Path(tmp)))
                else:
                    runs[label].append(run_reference("pool" if label == POOL else "bare", args.items, loops))
    med = {
        label: {key: statistics.median(r[key] for r in runs[label]) for key in ("wall_s", "cpu_s", "run_s")}
        for label in labels
    }
    threads, bare = med["threads: instances 2"], med[BARE]
    print(
        "\n| stage | wall s (whole process) | CPU s | own clock s | speed-up vs 2 threads: wall / own clock "
        "| own clock: bare / this | all runs: wall/CPU/own clock |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for label in labels:
        m = med[label]
        every = ", ".join(f"{r['wall_s']:.2f}/{r['cpu_s']:.2f}/{r['run_s']:.2f}" for r in runs[label])
        print(
            f"| {label} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | {m['run_s']:.2f} "
            f"| {threads['wall_s'] / m['wall_s']:.2f}× / {threads['run_s'] / m['run_s']:.2f}× "
            f"| {bare['run_s'] / m['run_s']:.2f} | {every} |"
        )
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
