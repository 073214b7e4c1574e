"""Counting every item a worker group touches, and the dead-letter file for the ones it could not handle."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.base import codec
from core.base.errors import error_shape
from core.base.redact import redact

logger = logging.getLogger(__name__)

GROUPS_SHOWN = 10  # the report lists this many kinds of error, the most frequent first


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
        for key in _COUNT_FIELDS:  # not asdict(): a group of 256 instances sums 256 of these for each look
            setattr(self, key, getattr(self, key) + getattr(other, key))
        return self

    @property
    def in_flight(self) -> int:
        """Received but neither processed nor dead-lettered yet (0 at the end, or items were lost)."""
        return self.received - self.processed - self.dead_lettered - self.returned


_COUNT_FIELDS = tuple(f.name for f in fields(Counts))


class DeadLetters:
    """Appends one JSON line per item that could not be handled; the file is created on first use.

    `kind` says what happened to the item: failed (an error), not-started (a source value no instance
    took before the stop), stopping (taken or queued while the run stopped), abandoned (in hand at a
    forced exit: it may have been completed), crashed (in hand when its worker instance died).
    The item is written with core.base.codec, so `main.py --replay` reads back the very values that failed.
    """

    def __init__(self, path: Path, pipeline: str) -> None:
        self.path = path
        self.pipeline = pipeline
        self.count = 0
        self.write_errors = 0
        self.first_write_error: str | None = None
        self.first_error: str | None = None  # "group: error" of the first item that failed or crashed
        # (group, kind, the error's shape) -> [count, first item, first error]: the report's errors, grouped
        self._kinds: dict[tuple[str, str, str], list[Any]] = {}
        self._lock = threading.Lock()
        self._fd: int | None = None  # opened on first use, appended to with one write per record

    def write(self, *, group: str, item: Any, error: str, attempts: int = 1, kind: str = "failed") -> bool:
        """Record one item; False (logged loudly with the whole record, never raised) when the file cannot take
        it. The item is written as it is (a replay must run the same item); its error is text, masked."""
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "pipeline": self.pipeline,
            "group": group,
            "kind": kind,
            "item": codec.encode(item, strict=False),
            "error": redact(error),
            "attempts": attempts,
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self._append(line.encode("utf-8"))
            except OSError as exc:
                self.write_errors += 1
                self.first_write_error = self.first_write_error or f"{type(exc).__name__}: {exc}"
                logger.error(
                    "CANNOT WRITE DEAD LETTER to %s (%s); this item is recorded only here: %s",
                    self.path,
                    exc,
                    line.rstrip(),
                )
                return False
            self.count += 1
            if self.first_error is None and kind in ("failed", "crashed"):
                self.first_error = f"{group}: {redact(error)}"
            seen = self._kinds.setdefault((group, kind, error_shape(record["error"], item)), [0, record["item"], None])
            seen[0] += 1
            seen[2] = seen[2] or record["error"]
            return True

    def grouped(self, limit: int = GROUPS_SHOWN) -> list[dict[str, Any]]:
        """The dead letters by group, kind and error (its shape: the item's own text left out), the most
        frequent first: count, first item, first error."""
        with self._lock:
            kinds = sorted(self._kinds.items(), key=lambda entry: -entry[1][0])
        return [
            {"group": group, "kind": kind, "count": count, "first_item": item, "error": error}
            for (group, kind, _), (count, item, error) in kinds[:limit]
        ]

    def _append(self, data: bytes) -> None:
        """Under the lock: append one whole line, or nothing. A full disk cuts a write short and fails the next
        one; the file is then cut back to where the line began, so it never ends in a torn line that would make
        the whole file unreadable to --replay."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        start = os.fstat(self._fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError as exc:  # the record is lost either way; say that the file may now end torn
                logger.error("cutting %s back to its last whole line failed: %s", self.path, exc)
            raise

    def close(self) -> None:
        """Close the file if one was opened."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError as exc:
                    logger.error("closing the dead-letter file %s failed: %s", self.path, exc)
                self._fd = None
