"""Keeps secrets (the database password) out of every log line, error, report and dead letter."""
from __future__ import annotations

import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a value that must never be printed; short values are ignored to keep text readable."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, tracebacks included, then masks secrets in the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
