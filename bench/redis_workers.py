"""Workers for the Redis benchmarks: a no-op sink that notes when its items came, one file per instance."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from workers.base import Worker


class RateDiscard(Worker):
    """A sink that drops every item and writes {"items", "first", "last"} (time.monotonic(), system-wide) to
    `<out_dir>/<instance name>.json` at the end, so the rate over every instance can be read from outside."""

    def __init__(self, *, out_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_dir = out_dir
        self.items = 0
        self.first = self.last = 0.0

    def process(self, item: Any) -> None:
        self.last = time.monotonic()
        if not self.items:
            self.first = self.last
        self.items += 1

    def teardown(self) -> None:
        Path(self.out_dir, f"{self.name}.json").write_text(
            json.dumps({"items": self.items, "first": self.first, "last": self.last}))


def sink_rate(out_dir: Path) -> dict:
    """Items, first and last over every instance's file in `out_dir`, and items/s from the first item to the last."""
    parts = [json.loads(path.read_text()) for path in out_dir.glob("*.json")]
    parts = [part for part in parts if part["items"]]
    items = sum(part["items"] for part in parts)
    first = min(part["first"] for part in parts)
    last = max(part["last"] for part in parts)
    return {"items": items, "first": first, "last": last, "rate": items / (last - first) if last > first else 0.0}
