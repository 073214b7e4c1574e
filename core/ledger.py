"""Counting every item a worker group touches, and the dead-letter file for the ones it could not handle."""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.redact import redact

logger = logging.getLogger(__name__)


@dataclass
class Counts:
    """Per-instance counters; only the owning thread writes them, so they need no lock.

    Every received item ends as processed (done, or for a sink, stored) or dead-lettered:
    received == processed + dead_lettered once a group has ended.
    """

    received: int = 0
    processed: int = 0
    emitted: int = 0
    stored: int = 0
    failed: int = 0
    dead_lettered: int = 0
    busy_s: float = 0.0  # time spent handling items (flushes included)
    blocked_s: float = 0.0  # of which, waiting for room in a full output queue

    def __iadd__(self, other: Counts) -> Counts:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)
        return self

    @property
    def in_flight(self) -> int:
        """Received but neither processed nor dead-lettered yet (0 at the end, or items were lost)."""
        return self.received - self.processed - self.dead_lettered


class DeadLetters:
    """Appends one JSON line per item that could not be handled; the file is created on first use."""

    def __init__(self, path: Path, pipeline: str) -> None:
        self.path = path
        self.pipeline = pipeline
        self.count = 0
        self._lock = threading.Lock()
        self._file = None

    def write(self, *, group: str, item: Any, error: str, attempts: int = 1) -> None:
        """Record one item; never raises, because losing the record must not also lose the run."""
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "pipeline": self.pipeline, "group": group, "item": item,
            "error": redact(error), "attempts": attempts,
        }
        line = redact(json.dumps(record, default=str, ensure_ascii=False)) + "\n"
        with self._lock:
            self.count += 1
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                logger.error("cannot write dead letter to %s (%s): %s", self.path, exc, line.rstrip())

    def close(self) -> None:
        """Close the file if one was opened."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
