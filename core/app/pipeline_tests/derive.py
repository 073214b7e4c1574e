"""The pipeline a test runs, derived from the pipeline file as written (its ${VAR}s still to be filled):
a stage test runs the group alone, in its own mode, fed its inputs by Inputs and its output queues read by
Capture; a pipeline test runs the whole file with the sources' values and the params the test gives."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from core.app.pipeline_tests.cases import Case

CAPTURE = "core.app.pipeline_tests.capture"


def derived(raw: dict[str, Any], case: Case, folder: Path) -> dict[str, Any]:
    """The pipeline (as YAML data) that `case` runs; a stage's outputs go to folder/outputs-QUEUE.jsonl."""
    raw = copy.deepcopy(raw)
    workers = [w for w in raw.get("workers") or [] if isinstance(w, dict)]
    if case.group is None:
        for worker in workers:
            name = worker.get("name")
            if name in case.input_values:
                worker["input_values"] = case.input_values[name]
            if name in case.params:
                worker["params"] = {**(worker.get("params") or {}), **case.params[name]}
        return raw
    [group] = [w for w in workers if w.get("name") == case.group]
    group["params"] = {**(group.get("params") or {}), **case.params}
    inputs = list(case.inputs or [])
    feed: list[dict[str, Any]] = []
    if group.get("input_queue"):
        feed.append(
            {
                "name": "TestInputs",
                "location": CAPTURE,
                "class": "Inputs",
                "input_values": inputs,
                "output_queues": [group["input_queue"]],
            }
        )
    else:
        group["input_values"] = inputs
    captures = [
        {
            "name": f"Captured_{queue}",
            "location": CAPTURE,
            "class": "Capture",
            "input_queue": queue,
            "params": {"path": str(outputs_file(folder, queue))},
        }
        for queue in group.get("output_queues") or []
    ]
    used = {group.get("input_queue"), *(group.get("output_queues") or [])}
    queues = [q for q in raw.get("queues") or [] if isinstance(q, dict) and q.get("name") in used]
    return {"queues": queues, "workers": [*feed, group, *captures]}


def outputs_file(folder: Path, queue: str) -> Path:
    """Where a stage test keeps what the stage sent on `queue`."""
    return folder / f"outputs-{queue}.jsonl"
