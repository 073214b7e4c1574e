"""One run per pipeline at a time: cron may start a run while the last one is still going."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import IO


class RunLock:
    """An exclusive flock on a file named after the pipeline; the OS drops it when the process ends."""

    def __init__(self, lock_dir: Path, pipeline_path: str | Path) -> None:
        resolved = str(Path(pipeline_path).resolve())
        digest = hashlib.sha256(resolved.encode()).hexdigest()[:12]
        self.path = lock_dir / f"{Path(resolved).stem}-{digest}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        """True if this process now holds the lock; False at once if another run holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # for a human asking who holds it
        handle.flush()
        self._file = handle
        return True

    def holder(self) -> str:
        """The pid written by the run holding the lock, if any."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        """Give the lock up (also happens when the process exits)."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
