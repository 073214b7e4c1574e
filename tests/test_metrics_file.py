"""--metrics-file: node_exporter's textfile format, written during the run and at its end, read back with
prometheus_client's own parser; the last success kept across runs from the history."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from main_process import SOURCE_AND_SINK, main_env
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT

TIMEOUT_S = 60.0
PIPELINE = SOURCE_AND_SINK


def samples(path: Path) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, as Prometheus would read the file."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def start(tmp_path: Path, pipeline: Path, metrics: Path, *args: str) -> subprocess.Popen:
    env = main_env(tmp_path)
    command = [sys.executable, str(ROOT / "main.py"), "--pipeline", str(pipeline), "--metrics-file", str(metrics)]
    return subprocess.Popen([*command, *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_the_metrics_file_during_the_run_and_at_its_end(tmp_path):
    pipeline = tmp_path / "nightly.yaml"
    pipeline.write_text(PIPELINE.format(values=list(range(20)), sink="Slow", params="{delay_s: 0.05}"))
    metrics = tmp_path / "nightly.prom"
    process = start(tmp_path, pipeline, metrics, "--status-interval", "0.1")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not metrics.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a file another process writes: there is no event to wait on
        during = samples(metrics)
        out, err = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)

    pipe = ("pipeline", "nightly")
    assert during[("pipeline_run_running", (pipe,))] == 1
    assert ("pipeline_group_received_total", (("group", "Sink"), pipe)) in during
    assert process.returncode == 0, err
    end = samples(metrics)
    assert end[("pipeline_run_running", (pipe,))] == 0
    assert end[("pipeline_run_exit_code", (pipe,))] == 0
    assert end[("pipeline_run_finish_reason", (pipe, ("reason", "finished")))] == 1
    assert end[("pipeline_group_received_total", (("group", "Sink"), pipe))] == 20
    assert end[("pipeline_group_processed_total", (("group", "Sink"), pipe))] == 20
    assert end[("pipeline_group_dead_lettered_total", (("group", "Sink"), pipe))] == 0
    assert end[("pipeline_queue_high_water", (pipe, ("queue", "Numbers")))] == 10
    assert end[("pipeline_items_lost", (pipe,))] == 0
    assert 0.9 < end[("pipeline_run_duration_seconds", (pipe,))] < TIMEOUT_S
    assert abs(end[("pipeline_last_success_timestamp_seconds", (pipe,))] - time.time()) < TIMEOUT_S
    assert not list(tmp_path.glob("*.prom.*"))  # written through a temporary file, renamed over it


def test_a_failing_run_keeps_the_last_success_of_the_runs_before(tmp_path):
    pipeline = tmp_path / "nightly.yaml"
    metrics = tmp_path / "nightly.prom"
    pipeline.write_text(PIPELINE.format(values=[2, 4], sink="FailOdd", params="{}"))
    ok = start(tmp_path, pipeline, metrics, "--quiet")
    assert ok.wait(TIMEOUT_S) == 0
    succeeded = samples(metrics)[("pipeline_last_success_timestamp_seconds", (("pipeline", "nightly"),))]
    pipeline.write_text(PIPELINE.format(values=[1, 3], sink="FailOdd", params="{}"))
    failing = start(tmp_path, pipeline, metrics, "--quiet")
    assert failing.wait(TIMEOUT_S) == 1
    for process in (ok, failing):
        process.communicate(timeout=10)

    after = samples(metrics)
    assert after[("pipeline_run_exit_code", (("pipeline", "nightly"),))] == 1
    assert after[("pipeline_group_dead_lettered_total", (("group", "Sink"), ("pipeline", "nightly")))] == 2
    # The failure did not move it: an alert on "no success in 26 hours" sees the real age.
    last = after[("pipeline_last_success_timestamp_seconds", (("pipeline", "nightly"),))]
    assert abs(last - succeeded) < 1.5  # the history keeps whole seconds
