"""Room in the process's descriptor table, made while the process has one thread.

Linux keeps a process's open descriptors in a table of 64 slots that doubles (128, 256, 512, ...) when a
descriptor beyond it is opened. Once the process has a second thread, each doubling waits for an RCU grace
period before it returns (fs/file.c, expand_fdtable(): synchronize_rcu()), and the thread opening the
descriptor sleeps meanwhile: 5-15 ms a time on this machine's 2 vCPUs. An asyncio stage opening 256
connections at once doubled the table three times while it sent its first requests, and its event loop slept
through each (a scheduler trace showed the loop asleep in socket(), the other core idle). Grown before the
first thread starts, the table costs a few microseconds and 8 KiB of kernel memory, and never shrinks.

So `python main.py` and every worker process call reserve() first. A pipeline needing more descriptors than
RESERVED (thousands of connections) grows the table further as usual, a few grace periods in all.
"""

from __future__ import annotations

import os

#: Descriptors the table holds from the start (fewer if the soft RLIMIT_NOFILE is lower).
RESERVED = 1024


def reserve(count: int = RESERVED) -> int:
    """Grow the descriptor table to hold `count` descriptors (fewer under a lower soft limit) now; return how
    many it holds at least (0 when nothing was done: not POSIX, or a limit of 64 or less).

    It opens a descriptor at number `count - 1` or above and closes it again; an open descriptor is never
    touched (F_DUPFD takes the lowest free number from there on). Call it before starting any thread.
    """
    try:
        import fcntl
        import resource
    except ImportError:  # not a POSIX system: nothing to do
        return 0
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = min(count, soft) if soft != resource.RLIM_INFINITY else count
    if top <= 64:
        return 0
    source = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.close(fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, top - 1))
    except OSError:  # every number from top - 1 up is taken, or the limit moved: the table is as it is
        return 0
    finally:
        os.close(source)
    return top
