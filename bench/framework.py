"""Framework benchmark: the runner's own overhead, and its memory when the sink stalls.

    .venv/bin/python bench/framework.py [--items 100000]

1. items/s through three no-op stages (source -> pass-through -> sink, one thread each) for 100,000 items,
   next to the same three stages written with plain threads and queue.Queue (the reference).
2. Peak RSS of a run whose sink is deliberately slow, with the default bounded queues and with queues made
   practically unbounded; each run is its own process, so its peak is its own. Items carry 1 KiB each.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THREE_STAGES = """\
queues:
  - {{name: A, maxsize: {maxsize}}}
  - {{name: B, maxsize: {maxsize}}}
workers:
  - {{name: Source, location: bench.noop_workers, class: {source}, input_values: [{items}], output_queues: [A]}}
  - {{name: Pass, location: bench.noop_workers, class: PassThrough, input_queue: A, output_queues: [B]}}
  - {{name: Sink, location: bench.noop_workers, class: {sink}, input_queue: B{sink_params}}}
"""


def runner_items_per_s(items: int, workdir: Path) -> float:
    from core.app.executor import YamlPipelineExecutor

    path = workdir / "three.yaml"
    path.write_text(
        THREE_STAGES.format(maxsize=1000, source="CountSource", items=items, sink="Discard", sink_params="")
    )
    executor = YamlPipelineExecutor(path, dead_letter_path=workdir / "dead.jsonl")
    started = time.perf_counter()
    executor.start()
    executor.join(600)
    seconds = time.perf_counter() - started
    assert executor.report.exit_code == 0 and executor.report.groups[-1].processed == items
    return items / seconds


def queue_queue_items_per_s(items: int) -> float:
    """Three plain threads joined by two queue.Queue(maxsize=1000), a sentinel at the end."""
    end = object()
    first, second = queue.Queue(1000), queue.Queue(1000)

    def source() -> None:
        for item in range(items):
            first.put(item)
        first.put(end)

    def passthrough() -> None:
        while (item := first.get()) is not end:
            second.put(item)
        second.put(end)

    def sink() -> None:
        while second.get() is not end:
            pass

    threads = [threading.Thread(target=f) for f in (source, passthrough, sink)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    return items / (time.perf_counter() - started)


def slow_sink_peak_rss(items: int, maxsize: int, workdir: Path) -> dict:
    """Run Source -> Pass -> slow batching sink in a child process; its peak RSS and how long it took."""
    path = workdir / f"slow-{maxsize}.yaml"
    path.write_text(
        THREE_STAGES.format(
            maxsize=maxsize,
            source="RecordSource",
            items=items,
            sink="SlowSink",
            sink_params=", params: {batch_size: 500, delay_s: 0.02, flush_interval_s: 1.0}",
        )
    )
    code = (
        "import json, resource, sys, time; sys.path.insert(0, sys.argv[1]);"
        "from core.app.executor import YamlPipelineExecutor;"
        "e = YamlPipelineExecutor(sys.argv[2], dead_letter_path=sys.argv[3]); t = time.perf_counter();"
        "e.start(); e.join(600);"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'exit': e.report.exit_code,"
        "'high_water': {q.name: q.high_water for q in e.report.queues},"
        "'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(path), str(workdir / "dead.jsonl")],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ours, plain = [], []
        for _ in range(args.repeat):  # interleaved, so a slow moment of the machine hits both
            ours.append(runner_items_per_s(args.items, workdir))
            plain.append(queue_queue_items_per_s(args.items))
        print(f"| three no-op stages, {args.items:,} items | items/s (best of {args.repeat}) | all runs |")
        print("|---|---:|---|")
        print(f"| YamlPipelineExecutor | {max(ours):,.0f} | {', '.join(f'{x:,.0f}' for x in ours)} |")
        print(f"| plain threads + queue.Queue | {max(plain):,.0f} | {', '.join(f'{x:,.0f}' for x in plain)} |")
        print()
        print(f"| slow sink, {args.items:,} items of 1 KiB | queue maxsize | peak RSS | queue high water | seconds |")
        print("|---|---:|---:|---|---:|")
        for label, maxsize in (("bounded (default)", 1000), ("unbounded", 10**9)):
            result = slow_sink_peak_rss(args.items, maxsize, workdir)
            assert result["exit"] == 0, result
            print(
                f"| {label} | {maxsize:,} | {result['peak_rss_mib']:.0f} MiB | {result['high_water']} "
                f"| {result['seconds']:.1f} |"
            )


if __name__ == "__main__":
    main()
