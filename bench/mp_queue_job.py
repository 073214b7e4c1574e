"""The reference for bench/process_hops.py: three processes passing N items through two
multiprocessing.Queue(maxsize=1000), a None sentinel at the end.

    python bench/mp_queue_job.py ITEMS OUT_PATH

Prints {"duration_s": ...}: from before the processes start (forkserver, as the runner uses) to after the
sink took the sentinel. The sink writes {"items", "first", "last"} (time.monotonic() of its first and last
item) to OUT_PATH, as bench/cpu_workers.py RateSink does.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time


def source(out, items: int) -> None:
    """Put 0..items-1, then the sentinel."""
    for item in range(items):
        out.put(item)
    out.put(None)


def passthrough(inbox, out) -> None:
    """Move items on until the sentinel, then pass it on."""
    while (item := inbox.get()) is not None:
        out.put(item)
    out.put(None)


def sink(inbox, items: int, out_path: str) -> None:
    """Take items until the sentinel; write when the first and last came."""
    taken, first = 0, 0.0
    while inbox.get() is not None:
        last = time.monotonic()
        if not taken:
            first = last
        taken += 1
    assert taken == items, taken
    with open(out_path, "w") as out:
        json.dump({"items": taken, "first": first, "last": last}, out)


def main(items: int, out_path: str) -> None:
    context = multiprocessing.get_context("forkserver")
    first, second = context.Queue(1000), context.Queue(1000)
    processes = [
        context.Process(target=source, args=(first, items)),
        context.Process(target=passthrough, args=(first, second)),
        context.Process(target=sink, args=(second, items, out_path)),
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        assert process.exitcode == 0
    print(json.dumps({"duration_s": time.perf_counter() - started}))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
