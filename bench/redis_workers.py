"""The rate at the sink of the Redis benchmarks, read from bench/cpu_workers.py RateSink's files (one per instance)."""

from __future__ import annotations

import json
from pathlib import Path


def sink_rate(out_dir: Path) -> dict:
    """Items, first and last over every instance's file in `out_dir`, and items/s from the first item to the last."""
    parts = [json.loads(path.read_text()) for path in out_dir.glob("*.json")]
    parts = [part for part in parts if part["items"]]
    items = sum(part["items"] for part in parts)
    first = min(part["first"] for part in parts)
    last = max(part["last"] for part in parts)
    return {"items": items, "first": first, "last": last, "rate": items / (last - first) if last > first else 0.0}
