"""The workers a stage test puts around the stage: Inputs gives it the test's inputs, Capture keeps what it sends
on (one JSON line per item, in the dead letters' codec, so a datetime reads back as one)."""

from __future__ import annotations

import threading
from typing import IO, Any

from core.api.worker import Worker
from core.base import codec

_files: dict[str, tuple[threading.Lock, IO[str]]] = {}
_files_lock = threading.Lock()


class Inputs(Worker):
    """A source: sends each of its input values on, as given."""

    def process(self, item: Any) -> Any:
        return item


class Capture(Worker):
    """A sink: appends each item it receives to the file `path`, a line each, as it comes."""

    def __init__(self, *, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path

    def process(self, item: Any) -> None:
        with _files_lock:
            if self.path not in _files:
                _files[self.path] = (threading.Lock(), open(self.path, "a", encoding="utf-8"))  # noqa: SIM115
            lock, file = _files[self.path]
        with lock:
            file.write(codec.dumps(item, strict=False) + "\n")
            file.flush()
