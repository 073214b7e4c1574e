"""Exceptions shared by the runner and the workers."""

from __future__ import annotations


class ItemError(Exception):
    """An item failed for a known reason (bad data, unknown symbol, server down); logged without a traceback."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class StartupError(Exception):
    """A worker group cannot start (raised from open_group); the run ends before any thread starts."""


class Returned(Exception):
    """Not settled here, and not a failure: the item went back to its queue or to another owner (a Redis
    entry claimed by a live consumer meanwhile). The loop counts it as returned, never dead-letters it."""
