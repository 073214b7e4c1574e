"""Start-up: `python main.py --check` on the shipped pipeline, whole-process wall and CPU, and how much of
it is imports (python -X importtime), with the imports that cost most.

    .venv/bin/python bench/startup.py [--repeat 5] [--top 15]

Each run is measured from outside (bench/measure.py). `python -c pass` is the interpreter's own start. The
import table is the median over the -X importtime runs of each module's cumulative time (its own plus what
it imported first), for the modules main.py's chain imports directly (core.app.cli's own imports, main.py being
a thin launcher).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import run_measured  # noqa: E402

PIPELINE = ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"
CHECK = [sys.executable, str(ROOT / "main.py"), "--check", "--pipeline", str(PIPELINE)]
LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def importtime() -> tuple[float, dict[str, tuple[int, float, float]]]:
    """(total import seconds, {module: (depth, self s, cumulative s)}) of one `main.py --check` run."""
    env = {**os.environ, "ENV_FILE": os.devnull}
    stderr = subprocess.run(
        [sys.executable, "-X", "importtime", *CHECK[1:]], env=env, capture_output=True, text=True, cwd=ROOT
    ).stderr
    modules: dict[str, tuple[int, float, float]] = {}
    total_s = 0.0
    for line in stderr.splitlines():
        match = LINE.match(line)
        if match:
            self_us, cumulative_us, indent, name = match.groups()
            total_s += int(self_us) / 1e6
            modules.setdefault(name, (len(indent) // 2, int(self_us) / 1e6, int(cumulative_us) / 1e6))
    return total_s, modules


def cli_children(modules: list[tuple[str, tuple[int, float, float]]]) -> list[str]:
    """The modules core.app.cli imported itself (-X importtime prints them at depth 1, just before core.app.cli)."""
    children: list[str] = []
    for name, (depth, _, _) in modules:
        if depth == 0:
            if name == "core.app.cli":
                return children
            children = []
        elif depth == 1:
            children.append(name)
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    env = {**os.environ, "ENV_FILE": os.devnull}
    checks, bare, imports = [], [], []
    for _ in range(args.repeat):  # interleaved
        result = run_measured(CHECK, env=env)
        assert result["exit_code"] == 0, result
        checks.append(result)
        bare.append(run_measured([sys.executable, "-c", "pass"], env=env))
        imports.append(importtime())
    print("\n| command | wall s (median) | CPU s (median) | all runs: wall/CPU |")
    print("|---|---:|---:|---|")
    for label, runs in (("main.py --check (shipped pipeline)", checks), ("python -c pass", bare)):
        every = ", ".join(f"{r['wall_s']:.3f}/{r['cpu_s']:.3f}" for r in runs)
        print(
            f"| {label} | {statistics.median(r['wall_s'] for r in runs):.3f} "
            f"| {statistics.median(r['cpu_s'] for r in runs):.3f} | {every} |"
        )
    total_s = statistics.median(total for total, _ in imports)
    print(f"\nimports (sum of -X importtime self times, median of {args.repeat}): {total_s:.3f} s")
    names = imports[0][1]
    top_level = [name for name, (depth, _, _) in names.items() if depth == 0 and name != "core.app.cli"]
    top_level += cli_children(list(names.items()))  # main.py is a thin launcher: the chain starts in core.app.cli
    cumulative = {name: statistics.median(run[name][2] for _, run in imports if name in run) for name in top_level}
    own = {name: statistics.median(run[name][1] for _, run in imports if name in run) for name in names}
    print("\n| top-level import (first imported by main.py's chain) | cumulative ms | share of imports |")
    print("|---|---:|---:|")
    for name, seconds in sorted(cumulative.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {name} | {1000 * seconds:.0f} | {seconds / total_s:.0%} |")
    print("\n| module, by its own import time | self ms |")
    print("|---|---:|")
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {name} | {1000 * seconds:.1f} |")


if __name__ == "__main__":
    main()
