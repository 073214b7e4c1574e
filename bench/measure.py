"""Run one command and measure it from outside: wall time, CPU of it and every process it started, peak RSS.

    python bench/measure.py --out RESULT.json [--sample-rss-s 0.05] -- COMMAND ...

This process makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so a descendant orphaned when its
parent exits (the forkserver after main.py, and anything it had not reaped) is re-parented here, and the
loop below reaps every one of them. The kernel adds a process's CPU, and that of the children it reaped,
to its parent's RUSAGE_CHILDREN when the parent reaps it; so once no descendant is left, this process's
RUSAGE_CHILDREN holds the CPU of the whole tree (forkserver grandchildren included), and nothing of its own.

With --sample-rss-s, a thread reads VmHWM (peak RSS) and the CPU so far of every descendant from /proc
that often and keeps the last sample per pid; VmHWM only grows, so the last sample before a process exits
is its peak to within one interval (its CPU, likewise, misses at most its last interval). Sampling is off
by default: walking /proc costs CPU on a 2-core machine.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
REAP_TIMEOUT_S = 30.0


def children_of() -> dict[int, list[int]]:
    """{ppid: [pid, ...]} of every process now on the machine."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces and parentheses
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(root: int) -> list[int]:
    """Pids of every process below `root`."""
    tree, found, todo = children_of(), [], [root]
    while todo:
        kids = tree.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def process_sample(pid: int) -> dict | None:
    """VmHWM (peak RSS, KiB), CPU seconds so far and command line of `pid`; None when it is gone or a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
            return {
                "peak_rss_kib": int(line.split()[1]),
                "cpu_s": cpu_s,
                "ppid": int(stat[1]),
                "cmdline": cmdline[:300],
            }
    return None


def sample_rss(peaks: dict[int, dict], interval_s: float, done: threading.Event) -> None:
    """Until `done`, sample every descendant into `peaks` every `interval_s`."""
    me = os.getpid()
    while not done.wait(interval_s):
        for pid in descendants(me):
            found = process_sample(pid)
            if found:
                peaks[pid] = found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--sample-rss-s", type=float, default=0.0, help="sample peak RSS this often (0: no)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed: descendants' CPU could not be counted")
    peaks: dict[int, dict] = {}
    done = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(peaks, args.sample_rss_s, done), daemon=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # nothing reaped yet; kept for clarity
    started = time.perf_counter()
    process = subprocess.Popen(command)
    if args.sample_rss_s:
        sampler.start()
    exit_code = process.wait()
    wall_s = time.perf_counter() - started
    deadline = time.monotonic() + REAP_TIMEOUT_S
    left_running = []
    while True:  # reap every orphaned descendant; each adds its (and its reaped children's) CPU to ours
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                left_running = descendants(os.getpid())
                break
            time.sleep(0.01)
    all_done_s = time.perf_counter() - started
    done.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "command": command,
        "exit_code": exit_code,
        "wall_s": wall_s,
        "all_reaped_s": all_done_s,
        "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "max_child_rss_kib": after.ru_maxrss,
        "peaks": peaks,
        "left_running": left_running,
    }
    Path(args.out).write_text(json.dumps(result))


def run_measured(
    command: list[str],
    *,
    env: dict | None = None,
    sample_rss_s: float = 0.0,
    timeout_s: float = 900,
    quiet: bool = True,
) -> dict:
    """Run `command` under this script and return its result (see the module docstring), with its
    standard output as "stdout"."""
    import tempfile

    _compile_project()
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        wrapper = [sys.executable, __file__, "--out", out.name, "--sample-rss-s", str(sample_rss_s), "--", *command]
        done = subprocess.run(
            wrapper,
            env=env,
            check=True,
            timeout=timeout_s,
            stdout=subprocess.PIPE,
            text=True,
            stderr=subprocess.DEVNULL if quiet else None,
        )
        return {**json.loads(Path(out.name).read_text()), "stdout": done.stdout}


def _compile_project() -> None:
    """Write the project's bytecode caches (once per benchmark), as a user's first run of main.py does. Where
    PYTHONDONTWRITEBYTECODE is set (this machine sets it), every measured run would otherwise compile the
    runner's ~45 modules from source, about 30 ms of CPU the user never pays after the first run."""
    if not _compiled:
        import compileall
        import re

        root = Path(__file__).resolve().parent.parent
        compileall.compile_dir(root, quiet=1, rx=re.compile(r"/\.(venv|git)/"))
        _compiled.append(True)


_compiled: list[bool] = []

if __name__ == "__main__":
    main()
