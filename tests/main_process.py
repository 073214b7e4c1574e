"""What the tests that run `python main.py` as a user would share: its environment (the tests' fixture workers
importable, the data in the test's folder, no .env.local) and the smallest pipeline of a source and a sink."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import ROOT

#: A source of `values` into Numbers (maxsize 10), read by a sink of class `sink` with `params` (YAML flow).
SOURCE_AND_SINK = """\
queues:
  - {{name: Numbers, maxsize: 10}}
workers:
  - {{name: Source, location: fixture_workers, class: Source, input_values: {values}, output_queues: [Numbers]}}
  - {{name: Sink, location: fixture_workers, class: {sink}, input_queue: Numbers, params: {params}}}
"""


#: Source -> Numbers -> Middle (Multiply) -> Passed -> Sink, both queues in Redis: the run a split over processes
#: (`--only`) is tested on. `sink` is Collect or BatchCollect, `key` where it records.
THREE_OVER_REDIS = """\
queues:
  - {{name: Numbers, maxsize: {maxsize}, backend: redis}}
  - {{name: Passed, maxsize: {maxsize}, backend: redis}}
workers:
  - {{name: Source, location: fixture_workers, class: Source, input_values: {values}, output_queues: [Numbers]}}
  - {{name: Middle, location: fixture_workers, class: Multiply, input_queue: Numbers, output_queues: [Passed]}}
  - {{name: Sink, location: fixture_workers, class: {sink}, input_queue: Passed, params: {{key: {key}}}}}
"""


def main_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `python main.py` a test starts."""
    return {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "ENV_FILE": os.devnull,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
    }
