"""The whole run's report, printed by the process that runs the sink of a run split over processes (`--only`):
each group's counts summed over the processes, in the words the local report uses (a storing sink `stored N`, never
`N in, 0 out`), and a line per process with what it ran. Two `python main.py` processes, real Redis queues."""

from __future__ import annotations

import subprocess
import sys
import uuid

import fixture_workers
from main_process import THREE_OVER_REDIS, main_env

from conftest import ROOT

TIMEOUT_S = 60.0
ITEMS = 12


def main(pipeline, run_id: str, only: str, tmp_path) -> subprocess.Popen:
    env = main_env(tmp_path)
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--pipeline", str(pipeline), "--run-id", run_id, "--only", only],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )


def test_the_sink_process_reports_the_whole_run_in_the_local_report_s_words(tmp_path):
    sink = tmp_path / "sink"
    pipeline = tmp_path / "split.yaml"
    pipeline.write_text(THREE_OVER_REDIS.format(maxsize=5, values=list(range(ITEMS)), sink="BatchCollect", key=sink))
    run_id = f"split-{uuid.uuid4().hex[:8]}"
    middle = main(pipeline, run_id, "Middle", tmp_path)
    ends = main(pipeline, run_id, "Source,Sink", tmp_path)
    try:
        ends_out, ends_err = ends.communicate(timeout=TIMEOUT_S)
        middle_out, middle_err = middle.communicate(timeout=TIMEOUT_S)
    finally:
        for process in (ends, middle):
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)

    assert (ends.returncode, middle.returncode) == (0, 0), ends_err + middle_err
    stored = [item for batch in fixture_workers.batches(str(sink)) for item in batch]
    assert sorted(stored) == [2 * i for i in range(ITEMS)]
    [summary] = ends_out.splitlines()
    whole = summary.split(f"; run {run_id} over 2 process(es): ", 1)[1]
    assert whole.startswith(f"Source {ITEMS} in, {ITEMS} out, Middle {ITEMS} in, {ITEMS} out, Sink stored {ITEMS};")
    assert "0 out" not in whole
    report = ends_err.split("run report:\n", 1)[1]
    processes = [line.strip() for line in report.splitlines() if line.startswith("  process ")]
    assert len(processes) == 2, report
    assert any(line.endswith(f"(Middle): Middle {ITEMS} in, {ITEMS} out") for line in processes), processes
    assert any(f"(Source, Sink): Source {ITEMS} in, {ITEMS} out, Sink stored {ITEMS}" in line for line in processes), (
        processes
    )
    assert f"run {run_id}" not in middle_out  # only the sink's process reports the run
    # The tests' Redis keeps nothing on disk: said once for the run, not by each of its processes.
    assert (ends_err + middle_err).count("keeps nothing on disk") == 1
