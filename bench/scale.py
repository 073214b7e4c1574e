"""Scale: 10k and 100k records of 1 KiB through a process hop and through an asyncio stage; items/s and the
peak RSS of every process, to show memory stays flat as the item count grows.

    .venv/bin/python bench/scale.py [--items 10000 100000] [--repeat 3]

RecordSource (bench/noop_workers.py, 1 KiB records, in the main process) -> PassThrough in a worker process
(`processes: 1`), or AsyncPassThrough (`async def process`, 16 asyncio tasks) -> RateSink (bench/cpu_workers.py,
items/s from its first item to its last). Each run is `main.py` under bench/measure.py, which reads VmHWM
(peak RSS) of every process of the tree from /proc every 20 ms and keeps the last reading per process.
Medians over the repeats; the order of the runs rotates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import run_measured  # noqa: E402

PIPELINE = """\
queues: [{{name: A, maxsize: 1000}}, {{name: B, maxsize: 1000}}]
workers:
  - {{name: Source, location: bench.noop_workers, class: RecordSource, input_values: [{items}], output_queues: [A]}}
  - {{name: Stage, location: {location}, class: {cls}, instances: {instances}, processes: {processes},
     input_queue: A, output_queues: [B]}}
  - {{name: Sink, location: bench.cpu_workers, class: RateSink, input_queue: B, params: {{out_path: '{out}'}}}}
"""
STAGES = {  # label: (location, class, instances, processes)
    "process hop (PassThrough, processes: 1)": ("bench.noop_workers", "PassThrough", 1, 1),
    "asyncio stage (AsyncPassThrough, 16 tasks)": ("bench.cpu_workers", "AsyncPassThrough", 16, 0),
}
SAMPLE_S = 0.02


def role(pid: str, peaks: dict) -> str:
    """What a process of the tree is: main, forkserver, worker process, resource tracker."""
    cmdline = peaks[pid]["cmdline"]
    if "main.py" in cmdline:
        return "main"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    if "forkserver" in cmdline:
        parent = str(peaks[pid]["ppid"])
        return "worker process" if parent in peaks and "forkserver" in peaks[parent]["cmdline"] else "forkserver"
    return cmdline[:40]


def run(label: str, items: int, workdir: Path) -> dict:
    """One measured run: items/s at the sink and the peak RSS of each kind of process."""
    location, cls, instances, processes = STAGES[label]
    out = workdir / "rate.json"
    path = workdir / "scale.yaml"
    path.write_text(
        PIPELINE.format(items=items, location=location, cls=cls, instances=instances, processes=processes, out=out)
    )
    command = [sys.executable, str(ROOT / "main.py"), "--pipeline", str(path), "--quiet", "--log-level", "WARNING"]
    result = run_measured(
        command, env={**os.environ, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull}, sample_rss_s=SAMPLE_S
    )
    sink = json.loads(out.read_text())
    assert result["exit_code"] == 0 and sink["items"] == items, (result, sink)
    peaks: dict[str, float] = {}
    for pid, sample in result["peaks"].items():
        name = role(pid, result["peaks"])
        peaks[name] = max(peaks.get(name, 0.0), sample["peak_rss_kib"] / 1024)
    return {
        "rate": (items - 1) / (sink["last"] - sink["first"]),
        "peaks": peaks,
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    cases = [(label, items) for label in STAGES for items in args.items]
    runs: dict[tuple[str, int], list[dict]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            shift = round_ % len(cases)
            for case in cases[shift:] + cases[:shift]:
                runs[case].append(run(*case, Path(tmp)))
    roles = ["main", "forkserver", "worker process", "resource tracker"]
    print("\n| stage | items | items/s (median) | peak RSS MiB: " + " | ".join(roles) + " | wall s | CPU s |")
    print("|---|---:|---:|" + "---:|" * len(roles) + "---:|---:|")
    for label, items in cases:
        results = runs[label, items]
        peaks = [
            statistics.median(r["peaks"][name] for r in results) if all(name in r["peaks"] for r in results) else None
            for name in roles
        ]
        cells = " | ".join("–" if peak is None else f"{peak:.1f}" for peak in peaks)
        print(
            f"| {label} | {items:,} | {statistics.median(r['rate'] for r in results):,.0f} | {cells} "
            f"| {statistics.median(r['wall_s'] for r in results):.2f} "
            f"| {statistics.median(r['cpu_s'] for r in results):.2f} |"
        )
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
