"""The run's timeline (core/run/timeline.py): one point per second at most, bounded however long the run, exact
totals; and in a real run's --stats-json."""

from __future__ import annotations

import json

from test_executor import JOIN_TIMEOUT_S, pipeline, source, stage  # noqa: F401

from core.run.ledger import Counts
from core.run.timeline import MAX_POINTS, Timeline


def test_a_run_of_any_length_keeps_at_most_600_points_and_exact_totals():
    timeline = Timeline({"Fetch": 4})
    seconds = 3 * 24 * 3600  # three days, sampled five times a second as the monitor does
    received = 0
    for tick in range(0, seconds * 5, 7):  # every 1.4 s of the run, to go faster than five a second
        t_s = tick / 5
        received = tick
        timeline.add(
            t_s, {"Fetch": Counts(received=received, busy_s=t_s * 2)}, {"Numbers": (tick % 10, tick % 13, None)}
        )
        assert len(timeline.points) <= MAX_POINTS

    data = timeline.to_dict()
    assert len(data["t_s"]) <= MAX_POINTS and len(data["t_s"]) > MAX_POINTS // 2
    assert sum(data["groups"]["Fetch"]["received"]) == received  # nothing lost in the merging
    assert data["step_s"] >= seconds / MAX_POINTS
    assert all(b == 0.5 for b in data["groups"]["Fetch"]["busy"][1:])  # 2 of 4 instances' time, every interval
    assert max(data["queues"]["Numbers"]["peak"]) == 12
    assert len(json.dumps(data)) < 200_000


def test_a_timeline_without_points_is_empty_not_an_error():
    """A run forced to exit before its first point still gets its report."""
    assert Timeline({"Sink": 1}).to_dict() == {
        "step_s": 1.0,
        "t_s": [],
        "groups": {
            "Sink": {"received": [], "emitted": [], "failed": [], "stored": [], "dead_lettered": [], "busy": []}
        },
        "queues": {},
    }


def test_points_closer_than_a_second_are_one_point_with_the_larger_peak():
    timeline = Timeline({"Sink": 1})
    timeline.add(0.2, {"Sink": Counts(received=1)}, {"Q": (5, 5, None)})
    timeline.add(0.4, {"Sink": Counts(received=3)}, {"Q": (2, 9, None)})
    timeline.add(1.1, {"Sink": Counts(received=4, busy_s=0.5)}, {"Q": (0, 1, None)})

    data = timeline.to_dict()
    assert data["t_s"] == [0.4, 1.1]
    assert data["groups"]["Sink"]["received"] == [3, 1]
    assert data["queues"]["Q"] == {"size": [2, 0], "peak": [9, 1]}
    assert data["groups"]["Sink"]["busy"] == [0.0, round(0.5 / 0.7, 3)]


def test_stats_json_carries_the_timeline_of_the_run(tmp_path):
    from core.app.executor import YamlPipelineExecutor

    path = tmp_path / "p.yaml"
    path.write_text(
        pipeline(
            {"Numbers": 100},
            source("Source", list(range(30)), "Numbers"),
            stage("Slow", "Slow", "Numbers", delay_s=0.05),  # 1.5 s: at least two points
        )
    )
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl")
    executor.start()
    executor.join(JOIN_TIMEOUT_S)
    assert not executor.is_alive()

    data = executor.report.to_dict()["timeline"]
    assert len(data["t_s"]) >= 2
    assert sum(data["groups"]["Slow"]["received"]) == 30
    assert sum(data["groups"]["Source"]["emitted"]) == 30
    assert max(data["groups"]["Slow"]["busy"]) > 0.5
    assert max(data["queues"]["Numbers"]["peak"]) > 0
    assert data["t_s"][-1] == executor.report.duration_s or abs(data["t_s"][-1] - executor.report.duration_s) < 0.5
