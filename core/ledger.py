"""Counting every item a worker group touches, and the dead-letter file for the ones it could not handle."""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core import codec
from core.redact import redact

logger = logging.getLogger(__name__)


@dataclass
class Counts:
    """Per-instance counters; only the owning thread writes them, so they need no lock.

    Every received item ends as processed (done, or for a sink, stored), dead-lettered, or returned to its
    queue unsettled: received == processed + dead_lettered + returned once a group has ended.
    """

    received: int = 0
    processed: int = 0
    emitted: int = 0
    stored: int = 0
    failed: int = 0
    dead_lettered: int = 0
    unrecorded: int = 0  # failed items the dead-letter file could not take: counted as lost, never as dead-lettered
    returned: int = 0  # taken, then given back to their queue (or to another owner) unsettled
    busy_s: float = 0.0  # time spent handling items (flushes included)
    blocked_s: float = 0.0  # of which, waiting for room in a full output queue

    def __iadd__(self, other: Counts) -> Counts:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)
        return self

    @property
    def in_flight(self) -> int:
        """Received but neither processed nor dead-lettered yet (0 at the end, or items were lost)."""
        return self.received - self.processed - self.dead_lettered - self.returned


class DeadLetters:
    """Appends one JSON line per item that could not be handled; the file is created on first use.

    `kind` says what happened to the item: failed (an error), not-started (a source value no instance
    took before the stop), stopping (taken or queued while the run stopped), abandoned (in hand at a
    forced exit: it may have been completed), crashed (in hand when its worker instance died).
    The item is written with core.codec, so `main.py --replay` reads back the very values that failed.
    """

    def __init__(self, path: Path, pipeline: str) -> None:
        self.path = path
        self.pipeline = pipeline
        self.count = 0
        self.write_errors = 0
        self.first_write_error: str | None = None
        self.first_error: str | None = None  # "group: error" of the first item that failed or crashed
        self._lock = threading.Lock()
        self._file = None

    def write(self, *, group: str, item: Any, error: str, attempts: int = 1, kind: str = "failed") -> bool:
        """Record one item; False (logged loudly, never raised) when the file cannot take it. The item is
        written as it is (a replay must run the same item); its error is text, masked."""
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "pipeline": self.pipeline, "group": group, "kind": kind, "item": codec.encode(item, strict=False),
            "error": redact(error), "attempts": attempts,
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                self.write_errors += 1
                self.first_write_error = self.first_write_error or f"{type(exc).__name__}: {exc}"
                logger.error("CANNOT WRITE DEAD LETTER to %s (%s); this item is recorded only here: %s",
                             self.path, exc, line.rstrip())
                return False
            self.count += 1
            if self.first_error is None and kind in ("failed", "crashed"):
                self.first_error = f"{group}: {redact(error)}"
            return True

    def close(self) -> None:
        """Close the file if one was opened."""
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:
                    logger.error("closing the dead-letter file %s failed: %s", self.path, exc)
                self._file = None
