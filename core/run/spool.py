"""A generator's outputs, held until it has finished, so that nothing a failing generator yielded goes on.

The first MEMORY_OUTPUTS stay in memory (the usual generator: a page's 503 symbols); past that they are
pickled to a temporary file in chunks, so an item that yields millions of records holds only a chunk at a
time while a stalled sink keeps everything downstream waiting. Outputs that go to disk are checked as they
go (`check`, the exits' "can every output queue take these?"), so a bad output fails its item before
anything of it was sent; the ones kept in memory are checked by the single emit that sends them.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from core.base.errors import ItemError

#: Outputs of one item kept in memory before the rest go to a temporary file.
MEMORY_OUTPUTS = 1024
#: Outputs per pickled chunk on disk, and per message when a spilled spool is sent on.
CHUNK = 64


class Spool:
    """The outputs of one item, in order: a list while small, a temporary file past MEMORY_OUTPUTS."""

    def __init__(self, check: Callable[[list[Any]], None], *, memory_outputs: int = MEMORY_OUTPUTS) -> None:
        self._check = check
        self._memory_outputs = memory_outputs
        self._outputs: list[Any] = []  # all of them while in memory; the chunk being filled once spilled
        self._file: IO[bytes] | None = None
        self.count = 0

    def add(self, output: Any) -> None:
        """Hold one more output; ItemError if it has to go to disk and cannot."""
        self._outputs.append(output)
        self.count += 1
        if self._file is None:
            if len(self._outputs) > self._memory_outputs:
                self._file = file = tempfile.TemporaryFile(prefix="spool-")
                held, self._outputs = self._outputs, []
                for start in range(0, len(held), CHUNK):
                    self._dump(file, held[start : start + CHUNK])
        elif len(self._outputs) >= CHUNK:
            chunk, self._outputs = self._outputs, []
            self._dump(self._file, chunk)

    @property
    def in_memory(self) -> bool:
        """True while every output is in memory (they then go on in one emit)."""
        return self._file is None

    def outputs(self) -> list[Any]:
        """Every output, when in_memory."""
        return self._outputs

    def chunks(self) -> Iterator[list[Any]]:
        """Every output, in order, CHUNK at a time (the last chunk may be shorter, or empty)."""
        if self._file is None:
            yield self._outputs
            return
        self._file.seek(0)
        while True:
            try:
                yield pickle.load(self._file)
            except EOFError:
                break
        yield self._outputs

    def close(self) -> None:
        """Drop the temporary file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._outputs = []

    def _dump(self, file: IO[bytes], chunk: list[Any]) -> None:
        self._check(chunk)
        try:
            pickle.dump(chunk, file, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - that output's item fails, nothing of it sent
            raise ItemError(
                f"it yielded more than {self._memory_outputs} outputs, which are held on disk until it "
                f"has finished, and one of them cannot be pickled ({type(exc).__name__}: {exc})"
            ) from None
