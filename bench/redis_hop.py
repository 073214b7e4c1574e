"""One Redis hop: items/s from a source through a `backend: redis` queue to a no-op sink, next to the same hop
written plainly with redis-py (bench/redis_plain.py), interleaved in the same run.

    .venv/bin/python bench/redis_hop.py [--items 100000] [--instances 4] [--repeat 3] [--single-items 20000]

Ours is `python main.py` on a three-line pipeline, run as a user would (its own process, no --run-id, so its
queues are in a run of its own): bench/noop_workers.py CountSource → queue Hop (backend: redis, maxsize 1000)
→ bench/cpu_workers.py RateSink × --instances. Two shapes:

- `input_values: [N]`: one input value yielding N items, the shape of the issue. An item's outputs and the
  acknowledgement of the item are one server-side step when both queues are in Redis, so the N outputs of
  that one value reach the stream together, when the generator ends: the sink then reads a full stream.
- `input_values: [100] × N/100`: the source's outputs reach the stream 100 at a time, while the sink reads
  (source and sink run concurrently, as the plain reference's producer and consumer do).

Times: `run` is N over the run's own duration_s (--stats-json: set-up, the source, the sink, the end), `sink`
is N over the sink's first item to its last (start-up and the source's generating left out), `first item`
is when the sink got its first item, counted from launching the process. Whole-process wall and CPU
(bench/measure.py: the process and everything it started) are shown too.

The reference (bench/redis_plain.py, one process) writes N items with XADD in pipelined batches of 100 from a
producer thread while its main thread reads them with XREADGROUP COUNT 100 and settles each batch: with one
Lua script doing XPENDING/XACK/XDEL (script), with XPENDING then MULTI/XACK/XDEL/EXEC (multi), or one item
at a time with the script (single, on --single-items). `prefill` rows settle a stream already written (only
the consumer is timed): the sink rate of ours in the first shape is the number to hold against them.
Every run's Redis keys are deleted after it.
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

from bench.measure import run_measured  # noqa: E402
from bench.redis_workers import sink_rate  # noqa: E402

PIPELINE = """\
queues:
  - {{name: Hop, maxsize: 1000, backend: redis}}
workers:
  - {{name: Source, location: bench.noop_workers, class: CountSource, input_values: {values}, output_queues: [Hop]}}
  - {{name: Sink, location: bench.cpu_workers, class: RateSink, input_queue: Hop, instances: {instances},
     params: {{out_dir: '{out_dir}'}}}}
"""
PIPELINE_NAME = "redis_hop_bench"  # its keys: yp:redis_hop_bench:<run id>:...
OURS_ONE = "main.py, input_values: [N]"
OURS_STREAM = "main.py, input_values: [100] × N/100"
PLAIN = {  # label: (mode, prefill)
    "plain redis-py, script per batch": ("script", False),
    "plain redis-py, MULTI/EXEC per batch": ("multi", False),
    "plain redis-py, one at a time (script)": ("single", False),
    "plain, prefill: script per batch, consumer only": ("script", True),
    "plain, prefill: MULTI/EXEC per batch, consumer only": ("multi", True),
}


def delete_keys(redis_url: str, pattern: str) -> None:
    """Delete this benchmark's keys (others' keys on the server are left alone)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=pattern, count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def run_ours(label: str, items: int, instances: int, workdir: Path, redis_url: str) -> dict:
    values = [items] if label == OURS_ONE else [100] * (items // 100)
    out_dir = workdir / "sink"
    out_dir.mkdir(exist_ok=True)
    for old in out_dir.glob("*.json"):
        old.unlink()
    path = workdir / f"{PIPELINE_NAME}.yaml"
    path.write_text(PIPELINE.format(values=json.dumps(values), instances=instances, out_dir=out_dir))
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
    env = {**os.environ, "DATA_DIR": str(workdir), "ENV_FILE": os.devnull, "REDIS_URL": redis_url}
    launched = time.monotonic()  # CLOCK_MONOTONIC is system-wide: comparable with the sink's stamps
    result = run_measured(command, env=env)
    delete_keys(redis_url, f"yp:{PIPELINE_NAME}:*")
    report = json.loads(stats.read_text())
    assert result["exit_code"] == 0 and report["groups"]["Sink"]["processed"] == items, report
    sink = sink_rate(out_dir)
    assert sink["items"] == items, sink
    return {
        **result,
        "rate": items / report["duration_s"],
        "sink_rate": sink["rate"],
        "first_s": sink["first"] - launched,
    }


def run_plain(label: str, items: int, redis_url: str) -> dict:
    mode, prefill = PLAIN[label]
    command = [
        sys.executable,
        str(ROOT / "bench" / "redis_plain.py"),
        "--mode",
        mode,
        "--items",
        str(items),
        "--redis-url",
        redis_url,
        *(["--prefill"] if prefill else []),
    ]
    result = run_measured(command)
    out = json.loads(result["stdout"].strip().splitlines()[-1])
    assert result["exit_code"] == 0 and out["items"] == items, out
    return {**result, "rate": items / out["duration_s"], "sink_rate": None, "first_s": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--single-items", type=int, default=20_000, help="items of the one-at-a-time reference")
    parser.add_argument("--instances", type=int, default=4, help="sink instances of ours")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; medians shown")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    labels = [OURS_ONE, OURS_STREAM, *PLAIN]
    runs: dict[str, list[dict]] = {label: [] for label in labels}
    loads = []
    with tempfile.TemporaryDirectory() as workdir:
        for repeat in range(args.repeat):
            order = labels[repeat % len(labels) :] + labels[: repeat % len(labels)]  # rotate who goes first
            for label in order:
                loads.append(os.getloadavg()[0])
                if label in (OURS_ONE, OURS_STREAM):
                    result = run_ours(label, args.items, args.instances, Path(workdir), args.redis_url)
                else:
                    items = args.single_items if PLAIN[label][0] == "single" else args.items
                    result = run_plain(label, items, args.redis_url)
                runs[label].append(result)
                print(
                    f"  {label}: {result['rate']:,.0f} items/s, wall {result['wall_s']:.2f}s, CPU "
                    f"{result['cpu_s']:.2f}s, load {loads[-1]:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"N = {args.items:,} (one at a time: {args.single_items:,}), sink instances {args.instances}, "
        f"medians of {args.repeat}; load average (1 min) during the runs {min(loads):.2f}–{max(loads):.2f}\n"
    )
    print(
        "| what | items/s, run's clock | items/s at the sink (first→last) | sink's first item after launch "
        "| process wall | process CPU | all runs: items/s (sink) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for label in labels:
        results = runs[label]
        rate = statistics.median(r["rate"] for r in results)
        wall = statistics.median(r["wall_s"] for r in results)
        cpu = statistics.median(r["cpu_s"] for r in results)
        if results[0]["sink_rate"] is not None:
            sink = f"{statistics.median(r['sink_rate'] for r in results):,.0f}"
            first = f"{statistics.median(r['first_s'] for r in results):.2f}s"
            every = ", ".join(f"{r['rate'] / 1000:.1f}k ({r['sink_rate'] / 1000:.1f}k)" for r in results)
        else:
            sink = first = "–"
            every = ", ".join(f"{r['rate'] / 1000:.1f}k" for r in results)
        print(f"| {label} | {rate:,.0f} | {sink} | {first} | {wall:.2f}s | {cpu:.2f}s | {every} |", flush=True)
    script, prefilled = (
        runs["plain redis-py, script per batch"],
        runs["plain, prefill: script per batch, consumer only"],
    )
    print(
        "\nOurs ÷ the plain script reference, paired within each repeat (runs minutes apart see different loads), "
        "median:\n"
    )
    for label in (OURS_ONE, OURS_STREAM):
        whole = statistics.median(o["rate"] / p["rate"] for o, p in zip(runs[label], script, strict=True))
        sink = statistics.median(o["sink_rate"] / p["rate"] for o, p in zip(runs[label], prefilled, strict=True))
        print(f"- {label}: run's clock ÷ plain script {whole:.0%}; sink ÷ plain script consumer-only {sink:.0%}")


if __name__ == "__main__":
    main()
