"""The descriptor table grown while a process has one thread (core/base/descriptors.py): by `python main.py` and by
every worker process (checked on real runs in test_collector.py), here reserve() itself, each case in a fresh
interpreter (its table as exec left it: 64 slots, or more when its parent had many descriptors open)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from conftest import ROOT
from core.base.descriptors import RESERVED

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

PROBE = """
import json, os, sys
from core.base.descriptors import reserve

def table():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("FDSize:"))

def open_fds():
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))

setup = {setup!r}
exec(setup)
before, fds = table(), open_fds()
got = reserve({count})
print(json.dumps({{"before": before, "after": table(), "got": got, "fds_before": fds, "fds_after": open_fds(),
                  "extra": globals().get("extra")}}))
"""


def reserved_here(count: int) -> int:
    """What reserve(count) can give under this process's soft descriptor limit (inherited by its children)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return count if soft == resource.RLIM_INFINITY else min(count, soft)


def probe(count: int = RESERVED, setup: str = "", soft_limit: int | None = None) -> dict:
    """reserve(count) in a fresh interpreter, after `setup` (Python) and under `soft_limit`."""

    def limit() -> None:
        if soft_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup, count=count)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_reserve_grows_the_table_at_once_and_leaves_no_descriptor_open():
    got = probe()
    assert got["before"] < reserved_here(RESERVED) <= got["after"] and got["got"] == reserved_here(RESERVED)
    assert got["fds_after"] == got["fds_before"]


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 300, reason="hard limit below 300")
def test_reserve_stays_within_the_soft_limit():
    got = probe(soft_limit=300)
    assert got["got"] == 300 and 300 <= got["after"] < RESERVED
    assert got["fds_after"] == got["fds_before"]


def test_an_open_descriptor_is_left_alone():
    # A pipe whose write end sits exactly where reserve() would put its descriptor: it must still work after.
    setup = "r, w = os.pipe()\nos.dup2(w, 1023)\nos.close(w)\nextra = None\n"
    after = "reserve(1024)\nos.write(1023, b'still mine')\nextra = os.read(r, 100).decode()\n"
    got = probe(count=1024, setup=setup + after)
    assert got["extra"] == "still mine"
    assert 1023 in got["fds_after"] and got["fds_after"] == got["fds_before"]


def test_a_limit_of_64_or_less_does_nothing():
    got = probe(soft_limit=64)
    assert got["got"] == 0 and got["after"] == got["before"]
