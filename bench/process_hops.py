"""Process hops: what `processes: 1` costs per item (throughput) and in latency when the queues are nearly empty.

    .venv/bin/python bench/process_hops.py [--items 100000] [--latency-items 200] [--repeat 3]

Throughput, `main.py` runs of N small ints (bench/noop_workers.py, the sink bench/cpu_workers.py RateSink): three no-op stages each in its own
process (CountSource, PassThrough, Discard with `processes: 1`; every item crosses four pipes, since the
parent puts each stage's outputs downstream); one hop (source and sink in the main process, PassThrough in
a process); and the same three stages as threads. Reference: three bare processes joined by two
multiprocessing.Queue (bench/mp_queue_job.py). Also N over the run's own clock (stats duration_s;
the script's own for the reference); wall and CPU of the whole process tree are shown too (bench/measure.py).
The main figure is the rate at the sink (bench/cpu_workers.py RateSink), first item to last: start-up
(forkserver, imports in the worker processes) is left out of it and stays in the own clock.

Latency: PacedStamps emits time.monotonic() every 20 ms (bench/cpu_workers.py), PassThrough in a worker
process (or a thread), LatencySink records now - stamp (CLOCK_MONOTONIC is system-wide, so the stamp
compares across processes). Added latency = with the process hop - without, median and p99. The source
waits 1 s before its first stamp, so the worker process has started (start-up is not latency).
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

from bench.cpu_workers import percentile  # noqa: E402
from bench.measure import run_measured  # noqa: E402

THREE = """\
queues: [{{name: A, maxsize: 1000}}, {{name: B, maxsize: 1000}}]
workers:
  - {{name: Source, location: bench.noop_workers, class: CountSource, input_values: [{items}], output_queues: [A],
     processes: {p_source}}}
  - {{name: Pass, location: bench.noop_workers, class: PassThrough, input_queue: A, output_queues: [B],
     processes: {p_pass}}}
  - {{name: Sink, location: bench.cpu_workers, class: RateSink, input_queue: B, processes: {p_sink},
     params: {{out_path: '{out}'}}}}
"""
PACED = """\
queues: [{{name: A, maxsize: 1000}}, {{name: B, maxsize: 1000}}]
workers:
  - {{name: Source, location: bench.cpu_workers, class: PacedStamps, input_values: {values}, output_queues: [A],
     params: {{interval_s: {interval_s}, start_delay_s: {start_delay_s}}}}}
  - {{name: Pass, location: bench.noop_workers, class: PassThrough, input_queue: A, output_queues: [B],
     processes: {p_pass}}}
  - {{name: Sink, location: bench.cpu_workers, class: LatencySink, input_queue: B, params: {{out_path: '{out}'}}}}
"""
THROUGHPUT = {  # label: processes of (source, pass, sink)
    "three stages, each in its own process": (1, 1, 1),
    "one hop: PassThrough in a process": (0, 1, 0),
    "three stages as threads (no process)": (0, 0, 0),
}
MP_QUEUE = "bare multiprocessing.Queue, three processes"
START_DELAY_S = 1.0  # the source waits this long before its first stamp, so worker processes are up


def run_main(text: str, workdir: Path) -> dict:
    """Run `main.py` on the pipeline `text`, measured; with its own clock and what the sink processed."""
    path = workdir / "hops.yaml"
    path.write_text(text)
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
    result = run_measured(command, env={**os.environ, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull})
    report = json.loads(stats.read_text())
    assert result["exit_code"] == 0, report
    return {**result, "run_s": report["duration_s"], "sink": report["groups"]["Sink"]["processed"]}


def throughput(label: str, items: int, workdir: Path) -> dict:
    """One run; "rate" is items/s at the sink, from its first item to its last (start-up left out)."""
    out = workdir / "rate.json"
    if label == MP_QUEUE:
        result = run_measured([sys.executable, str(ROOT / "bench" / "mp_queue_job.py"), str(items), str(out)])
        result["run_s"] = json.loads(result["stdout"].strip().splitlines()[-1])["duration_s"]
    else:
        p_source, p_pass, p_sink = THROUGHPUT[label]
        result = run_main(THREE.format(items=items, p_source=p_source, p_pass=p_pass, p_sink=p_sink, out=out), workdir)
    sink = json.loads(out.read_text())
    assert sink["items"] == items, sink
    return {**result, "rate": (items - 1) / (sink["last"] - sink["first"])}


def latencies_ms(processes: int, items: int, interval_s: float, workdir: Path) -> list[float]:
    """Milliseconds from each stamp to the sink, with PassThrough in `processes` worker processes."""
    out = workdir / "latencies.json"
    text = PACED.format(
        values=json.dumps(list(range(items))),
        interval_s=interval_s,
        p_pass=processes,
        out=out,
        start_delay_s=START_DELAY_S,
    )
    result = run_main(text, workdir)
    assert result["sink"] == items, result
    return [1000 * s for s in json.loads(out.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--latency-items", type=int, default=200)
    parser.add_argument("--interval-s", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    labels = list(THROUGHPUT) + [MP_QUEUE]
    runs: dict[str, list[dict]] = {label: [] for label in labels}
    latencies: dict[int, list[list[float]]] = {1: [], 0: []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for round_ in range(args.repeat):
            shift = round_ % len(labels)
            for label in labels[shift:] + labels[:shift]:  # rotated, so no one always goes first
                runs[label].append(throughput(label, args.items, workdir))
            for processes in (1, 0) if round_ % 2 == 0 else (0, 1):
                latencies[processes].append(latencies_ms(processes, args.latency_items, args.interval_s, workdir))
    print(
        f"\n| {args.items:,} items | items/s at the sink (median) | all runs | items/s over the own clock "
        f"| wall s | CPU s |"
    )
    print("|---|---:|---|---:|---:|---:|")
    for label in labels:
        rates = [r["rate"] for r in runs[label]]
        print(
            f"| {label} | {statistics.median(rates):,.0f} | {', '.join(f'{x:,.0f}' for x in rates)} "
            f"| {statistics.median(args.items / r['run_s'] for r in runs[label]):,.0f} "
            f"| {statistics.median(r['wall_s'] for r in runs[label]):.2f} "
            f"| {statistics.median(r['cpu_s'] for r in runs[label]):.2f} |"
        )
    print(
        f"\n| {args.latency_items} items {1000 * args.interval_s:g} ms apart | median ms | p99 ms | max ms "
        f"| per run: median / p99 ms |"
    )
    print("|---|---:|---:|---:|---|")
    summary = {}
    for processes, label in ((0, "PassThrough as a thread"), (1, "PassThrough in a process (processes: 1)")):
        pooled = [x for run in latencies[processes] for x in run]
        summary[processes] = (statistics.median(pooled), percentile(pooled, 0.99))
        per_run = ", ".join(
            f"{statistics.median(run):.2f} / {percentile(run, 0.99):.2f}" for run in latencies[processes]
        )
        print(
            f"| {label} | {summary[processes][0]:.2f} | {summary[processes][1]:.2f} | {max(pooled):.2f} | {per_run} |"
        )
    print(
        f"| added by the process hop | {summary[1][0] - summary[0][0]:.2f} | {summary[1][1] - summary[0][1]:.2f} | | |"
    )
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
