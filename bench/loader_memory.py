"""Memory of the pipeline file loader: peak RSS of `python main.py --check` on a file whose source lists N
`input_values`, for N = 1, 20,000 and 200,000 (or --values): text values (`item-000001`) as a block list (one a
line) and as one flow list (`[item-000001, ...]` on one line), and integers as a block list.

    .venv/bin/python bench/loader_memory.py [--values 1 20000 200000] [--repeat 3]

Peak RSS is the whole process's (bench/measure.py: ru_maxrss of the process, the best of --repeat runs), so
the interpreter and the imports are in it: the 1-value row is that floor. The ratio column is each row's peak
over the 20,000-value row of the same form; the loader's target is 200,000 values at no more than 1.5x that.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import run_measured  # noqa: E402

PIPELINE = """\
queues:
  - name: Items
workers:
  - name: Source
    location: bench.noop_workers
    class: PassThrough
    input_values: {values}
    output_queues: [Items]
  - name: Sink
    location: bench.noop_workers
    class: Discard
    input_queue: Items
"""


FORMS = ("block", "flow", "ints")


def pipeline_text(count: int, form: str) -> str:
    """The pipeline file with `count` input values in `form` (block or flow text, or a block of integers)."""
    values = [str(1_000_000 + index) if form == "ints" else f"item-{index:06d}" for index in range(count)]
    listed = (
        "[" + ", ".join(values) + "]"
        if form == "flow"
        else ("\n" + "".join(f"      - {value}\n" for value in values)).rstrip("\n")
    )
    return PIPELINE.format(values=listed)


def peak_rss_mib(path: Path, repeat: int) -> float:
    """The lowest peak RSS (MiB) of `repeat` runs of `main.py --check` on `path`."""
    env = {**os.environ, "ENV_FILE": os.devnull}
    peaks = []
    for _ in range(repeat):
        result = run_measured([sys.executable, str(ROOT / "main.py"), "--check", "--pipeline", str(path)], env=env)
        if result["exit_code"] != 0:
            raise SystemExit(f"--check of {path} exited {result['exit_code']}")
        peaks.append(result["max_child_rss_kib"] / 1024)
    return min(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, nargs="+", default=[1, 20_000, 200_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'form':6s} {'values':>8s} {'file MiB':>9s} {'peak RSS MiB':>13s} {'/ 20k':>6s}")
    with tempfile.TemporaryDirectory() as folder:
        for form in FORMS:
            base = None
            for count in args.values:
                path = Path(folder) / f"{form}-{count}.yaml"
                path.write_text(pipeline_text(count, form), encoding="utf-8")
                peak = peak_rss_mib(path, args.repeat)
                base = peak if count == 20_000 else base
                ratio = f"{peak / base:5.2f}x" if base else ""
                print(f"{form:6s} {count:8,d} {path.stat().st_size / 2**20:9.2f} {peak:13.1f} {ratio:>6s}", flush=True)


if __name__ == "__main__":
    main()
