"""Exceptions shared by the runner and the workers."""

from __future__ import annotations

import re
from typing import Any


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


#: A decimal number in an error (a duration, a timeout) varies from item to item without making it another error.
_DECIMAL = re.compile(r"\d+\.\d+")


def error_shape(error: str, item: Any) -> str:
    """The error with the item's own text (where it stands alone: item 4 is not cut out of "HTTP 404") and decimal
    numbers taken out, so that the same failure of many items reads the same:
    "ValueError: no price for 'AAPL'" -> "ValueError: no price for <item>"."""
    for text in sorted({repr(item), str(item)}, key=len, reverse=True):
        if text:
            error = re.sub(rf"(?<!\w){re.escape(text)}(?!\w)", "<item>", error)
    return _DECIMAL.sub("N.N", error)
