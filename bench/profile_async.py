"""Where the async pipeline's CPU goes: py-spy samples of `main.py` (or the plain script) on a big page.

    .venv/bin/python bench/profile_async.py [--impl ours|all-async|stage|plain] [--symbols 3521] [--concurrency 128]

Runs the job once under `py-spy record --gil --format raw` (samples of the thread holding the GIL) against
bench/fast_sites.py and prints the top functions by own samples and by inclusive samples, each with its
file:line (the line of the function's first sampled frame is shown for own time; inclusive time is summed
per function), and each sample charged to the innermost line of this project on its stack (so the cost of a
library call lands on the line of ours that made it). Samples are shares of the time a thread held the GIL,
imports included unless --skip-imports; on a big page the per-request work dominates. Time with the GIL
released (system calls, waiting to take it back) is not sampled: compare user and system CPU for that.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.async_http import STAGE, command  # noqa: E402
from bench.fast_sites import FastSites  # noqa: E402
from bench.fresh_database import ADMIN_URL, FreshDatabase  # noqa: E402

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(path: str) -> str:
    """A path relative to the project or to site-packages / the standard library."""
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


PROJECT = ("core/", "workers/", "yaml_reader.py", "main.py", "bench/")


def summarize(raw: str, top: int, *, skip_imports: bool) -> None:
    """Print py-spy raw samples by thread, leaf line, project line and function."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = imports = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = [FRAME.match(frame) for frame in stack.split(";")]
        frames = [f for f in frames if f]
        if any(f["function"] == "_find_and_load" for f in frames):
            imports += samples
            if skip_imports:
                continue
        total += samples
        entry = next((f for f in frames if not f["file"].endswith("threading.py")), None)
        threads[f"{entry['function']} ({short(entry['file'])})" if entry else "?"] += samples
        if frames:
            leaf = frames[-1]
            own[f"{leaf['function']} ({short(leaf['file'])}:{leaf['line']})"] += samples
            # Charged to the innermost line of this project on the stack, with the library it was in then.
            line = next((f for f in reversed(frames) if short(f["file"]).startswith(PROJECT)), None)
            where = "itself" if line is leaf else short(leaf["file"]).split("/")[0]
            ours[
                f"{line['function']} ({short(line['file'])}:{line['line']}) -> {where}"
                if line
                else f"(no project frame) -> {short(leaf['file']).split('/')[0]}"
            ] += samples
        seen = set()
        for frame in frames:
            key = f"{frame['function']} ({short(frame['file'])})"
            if key not in seen:  # recursion counts once per sample
                seen.add(key)
                inclusive[key] += samples
    print(
        f"{total + (imports if skip_imports else 0)} samples, {imports} of them importing"
        f"{' (left out below)' if skip_imports else ''}\n\nby thread (its entry function) | % of samples"
    )
    for key, samples in threads.most_common(top):
        print(f"  {100 * samples / total:5.1f}%  {key}")
    print("\nown (leaf line) | % of samples")
    for key, samples in own.most_common(top):
        print(f"  {100 * samples / total:5.1f}%  {key}")
    print("\ncharged to the innermost line of this project on the stack -> where the time was spent | % of samples")
    for key, samples in ours.most_common(top):
        print(f"  {100 * samples / total:5.1f}%  {key}")
    print("\ninclusive (function) | % of samples")
    for key, samples in inclusive.most_common(top):
        print(f"  {100 * samples / total:5.1f}%  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", choices=["ours", "all-async", "stage", "plain"], default="ours")
    parser.add_argument("--symbols", type=int, default=3521)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--raw-out", help="also keep py-spy's raw output here")
    parser.add_argument("--skip-imports", action="store_true", help="leave out samples taken while importing")
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread py-spy thinks busy (default: only the one holding the GIL; "
        "py-spy counts threads blocked in Condition.wait as busy)",
    )
    args = parser.parse_args()
    impl = {"ours": "ours", "all-async": "ours, all async", "stage": STAGE, "plain": "plain asyncio"}[args.impl]
    with (
        FastSites(max_symbols=args.symbols) as sites,
        tempfile.TemporaryDirectory() as tmp,
        FreshDatabase(ADMIN_URL) as url,
    ):
        raw = Path(args.raw_out or Path(tmp) / "raw.txt")
        job = command(impl, sites.synthetic_url(args.symbols), sites, args.concurrency, url, Path(tmp) / "s.json")
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": tmp, "ENV_FILE": os.devnull}
        subprocess.run(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-r",
                str(args.rate),
                "-f",
                "raw",
                "-o",
                str(raw),
                *([] if args.all_threads else ["--gil"]),
                "--",
                *job,
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        summarize(raw.read_text(), args.top, skip_imports=args.skip_imports)


if __name__ == "__main__":
    main()
