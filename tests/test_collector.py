"""Cyclic garbage collection around start-up (core/base/collector.py): held off until every instance has set up,
never longer than its limit, then resumed with start-up's objects frozen; in the main process and in worker
processes alike, as `python main.py` runs a pipeline. The same runs check the descriptor table was grown
before the first thread (core/base/descriptors.py; its own tests are in test_descriptors.py)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import fixture_workers
import pytest
from test_descriptors import reserved_here

from conftest import ROOT, run_stage
from core.base.collector import YOUNG_THRESHOLD, StartupCollection
from core.base.descriptors import RESERVED


@pytest.fixture
def collection():
    """A StartupCollection; the test process's collector is left as it was found."""
    was_enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield StartupCollection(limit_s=30)
    gc.unfreeze()
    gc.set_threshold(*threshold)
    (gc.enable if was_enabled else gc.disable)()


def test_collection_resumes_when_the_last_instance_has_set_up(collection):
    collection.pause()
    collection.expect()
    collection.expect()
    assert not gc.isenabled() and collection.paused
    collection.set_up()
    assert not gc.isenabled(), "resumed before every instance had set up"
    collection.set_up()
    assert gc.isenabled() and not collection.paused
    assert gc.get_freeze_count() > 0, "start-up's objects were not frozen"
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


@pytest.mark.parametrize("instances", [1, 0])  # 0: nothing counts as an instance (course-style workers)
def test_collection_is_held_off_for_the_limit_at_most(collection, instances):
    collection.limit_s = 0.2
    collection.pause()
    for _ in range(instances):
        collection.expect()  # and never set_up()
    timer = collection._timer
    timer.join(10)
    assert not timer.is_alive()
    assert gc.isenabled() and not collection.paused and gc.get_freeze_count() > 0


def test_collection_the_application_turned_off_stays_off(collection):
    gc.disable()
    collection.pause()
    collection.expect()
    collection.set_up()
    assert not gc.isenabled() and gc.get_freeze_count() == 0 and gc.get_threshold()[0] != YOUNG_THRESHOLD


def test_without_pause_nothing_changes(collection):
    collection.expect()
    collection.set_up()
    assert gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.parametrize("mode", ["threads", "async", "processes", "async in processes"])
def test_a_run_collects_again_with_start_up_frozen_in_every_process(tmp_path, mode):
    """...and every process of the run had its descriptor table grown at start."""
    key, sink = str(tmp_path / "state"), str(tmp_path / "sink")
    run = run_stage(
        tmp_path,
        "AsyncCollectorState" if "async" in mode else "CollectorState",
        key=key,
        sink=sink,
        items=10,
        instances=2,
        processes=2 if "processes" in mode else 0,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(fixture_workers.collected(sink)) == list(range(10))
    states = fixture_workers.collected(key)
    assert len(states) == (4 if "processes" in mode else 2), states  # one per instance
    assert all(
        state["collecting"] and state["frozen"] and state["young_threshold"] == YOUNG_THRESHOLD for state in states
    ), states
    assert all(state["fd_table"] >= reserved_here(RESERVED) for state in states), states
    pids = {state["pid"] for state in states}
    assert len(pids) == (2 if "processes" in mode else 1)
    assert json.loads((tmp_path / "s.json").read_text())["exit_code"] == 0


def test_importing_main_leaves_collection_alone():
    check = "import gc, main\nprint(gc.isenabled(), gc.get_freeze_count())"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "0"]
