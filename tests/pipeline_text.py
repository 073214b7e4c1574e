"""Writing small pipeline files in tests, and finding the line an expected problem points at."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    """The pipeline text (dedented) as a file."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def line(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the `occurrence`-th `needle`."""
    hits = [n for n, content in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in content]
    assert len(hits) >= occurrence, f"{needle!r} is not in the text {occurrence} time(s)"
    return hits[occurrence - 1]


def source_to_sink(values: list, sink_class: str = "Collect", **params: str) -> str:
    """Source (fixture_workers, `values`) -> Numbers -> one sink group of `sink_class` with `params`."""
    text = (
        "queues:\n  - name: Numbers\nworkers:\n"
        f"  - name: Source\n    location: fixture_workers\n    class: Source\n    input_values: {values}\n"
        "    output_queues: [Numbers]\n"
        f"  - name: Sink\n    location: fixture_workers\n    class: {sink_class}\n    input_queue: Numbers\n"
    )
    return text + ("    params:\n" + "".join(f"      {k}: {v}\n" for k, v in params.items()) if params else "")
