"""A forced exit while a run drains (five SIGTERMs within 100 ms) records every item exactly once: each input
value is stored or dead-lettered, none is dead-lettered twice, and the stats agree with the dead-letter file."""

from __future__ import annotations

import collections
import os
import signal
import time

import fixture_workers
import pytest
from test_processes import Run, no_process_left, pipeline


@pytest.mark.parametrize("round_", range(6))
@pytest.mark.parametrize("processes", [0, 2])
def test_five_sigterms_within_100_ms_record_each_item_once(tmp_path, processes, round_):
    key = str(tmp_path / "sink")
    text = pipeline(key, "Slow", items=2000, processes=processes or 1, instances=4, maxsize=50, delay_s=0.002)
    if not processes:
        text = text.replace("    processes: 1\n", "")
    with Run(tmp_path, text, "--shutdown-timeout", "30") as run:
        fixture_workers.wait_collected(key, 20, timeout_s=30)
        for _ in range(5):
            os.kill(run.proc.pid, signal.SIGTERM)
            time.sleep(0.02)
        code = run.wait(20)
    no_process_left(run)

    letters = run.letters
    assert code == 143, run.log()[-3000:]
    twice = [item for item, n in collections.Counter(letter["item"] for letter in letters).items() if n > 1]
    assert not twice, [letter for letter in letters if letter["item"] in twice]
    stored = set(fixture_workers.collected(key))
    assert set(range(2000)) <= stored | {letter["item"] for letter in letters}
    stats = run.stats
    assert stats["dead_letters"] == len(letters) and stats["lost"] == 0, (
        stats["dead_letters"],
        len(letters),
        stats["lost"],
    )
    for name, group in stats["groups"].items():
        assert group["received"] == group["processed"] + group["dead_lettered"] + group.get("returned", 0), name
