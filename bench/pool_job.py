"""References for bench/processes_cpu.py: the same spin() over the same items, without the runner.

    python bench/pool_job.py pool|bare ITEMS LOOPS

pool: concurrent.futures.ProcessPoolExecutor(2).map, one item per task. bare: two multiprocessing
processes that each spin half the items and send nothing back: what 2 cores can give at all (the
ceiling for any 2-process speed-up on this machine, at its current load). Prints {"duration_s": ...},
from before the processes are started to after the last item (imports before).
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu_workers import spin  # noqa: E402


def spin_range(first: int, stop: int, loops: int) -> None:
    """spin() every item of range(first, stop)."""
    for item in range(first, stop):
        spin(item, loops)


def main(mode: str, items: int, loops: int) -> None:
    started = time.perf_counter()
    if mode == "pool":
        with ProcessPoolExecutor(2) as pool:
            assert len(list(pool.map(partial(spin, loops=loops), range(items), chunksize=1))) == items
    else:
        half = items // 2
        processes = [
            multiprocessing.Process(target=spin_range, args=(first, stop, loops))
            for first, stop in ((0, half), (half, items))
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
            assert process.exitcode == 0
    print(json.dumps({"duration_s": time.perf_counter() - started}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
