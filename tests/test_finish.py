"""However a run ends, even with an error while it finishes, the report and --stats-json are written and the
error is the run's, in one line."""

from __future__ import annotations

import json
import os
import threading

import fixture_workers
import pytest
from test_executor import pipeline, source, stage

from core.app import cli
from core.app.executor import YamlPipelineExecutor


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ENV_FILE", os.devnull)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEAD_LETTER_PATH", str(tmp_path / "dl.jsonl"))
    yield
    fixture_workers.forget("finish")


def run_command(tmp_path) -> tuple[int, dict]:
    """`main.py` in this process on Source -> Sink: its exit code and --stats-json, once its threads have ended."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        pipeline(
            {"Numbers": 5}, source("Source", range(3), "Numbers"), stage("Sink", "Collect", "Numbers", key="finish")
        )
    )
    before = set(threading.enumerate())
    code = cli.main(["--pipeline", str(path), "--quiet", "--stats-json", str(tmp_path / "s.json")])
    for thread in set(threading.enumerate()) - before:
        thread.join(10)
    return code, json.loads((tmp_path / "s.json").read_text())


def test_an_error_while_the_run_finishes_is_the_runs_error_and_the_stats_are_written(
    tmp_path, env, monkeypatch, capsys
):
    def breaks(self):
        raise RuntimeError("closing went wrong\nbadly")

    monkeypatch.setattr(YamlPipelineExecutor, "_finish", breaks)
    code, stats = run_command(tmp_path)

    assert code == 1 and stats["finish_reason"] == "failed"
    assert stats["error"] == "finishing the run failed: RuntimeError: closing went wrong badly"
    assert capsys.readouterr().out.strip().endswith("exit 1")


def test_a_run_that_could_not_even_build_its_report_still_writes_the_stats(tmp_path, env, monkeypatch, capsys):
    def breaks(self, *args, **kwargs):
        raise RuntimeError("no report")

    monkeypatch.setattr(YamlPipelineExecutor, "_report", breaks)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the executor thread's error is expected
    code, stats = run_command(tmp_path)

    assert code == 1 and stats["finish_reason"] == "failed"
    assert "without a report" in stats["error"]
