"""Logging for a run: to stderr (through rich when the live status is on), optionally to a file, secrets masked."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from core.base.redact import RedactingFormatter
from core.pipeline.problems import SettingsError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}  # names the logging module itself accepts
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
RICH_FORMAT = "%(threadName)s %(name)s: %(message)s"  # rich adds the time and level itself
ISO_TIME = "%Y-%m-%d %H:%M:%S"  # the date as the file log writes it (asctime), not rich's MM/DD/YY

#: A record with this attribute true is also printed on stdout, which is the live view's terminal: the terminal's
#: handler leaves it out (the log file keeps it).
SHOWN_ON_STDOUT = "shown_on_stdout"

logger = logging.getLogger("main")


def _not_shown_on_stdout(record: logging.LogRecord) -> bool:
    return not getattr(record, SHOWN_ON_STDOUT, False)


def parse_log_level(text: str) -> str:
    """A log level written in any case (`debug`, `Info`, `warn`) as logging's name for it (`WARNING`)."""
    name = str(text).strip().upper()
    name = LEVEL_ALIASES.get(name, name)
    if name not in LOG_LEVELS:
        raise SettingsError(f"unknown log level {text!r}: use one of {', '.join(LOG_LEVELS)} (any case)")
    return name


def setup_logging(level: str, *, log_file: str | None = None, console: Any = None) -> None:
    """Log at `level` to stderr (through `console` when given, so log lines print above the live table)
    and to `log_file`; uncaught errors in any thread go through the same masking formatter."""
    if console is not None:  # a rich Console: the live status is on
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=console, show_path=False, markup=False, rich_tracebacks=False, log_time_format=ISO_TIME
        )
        handler.setFormatter(RedactingFormatter(RICH_FORMAT))
        handler.addFilter(_not_shown_on_stdout)
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(RedactingFormatter(LOG_FORMAT))
        if sys.stderr.isatty():
            handler.addFilter(_not_shown_on_stdout)
    handlers = [handler]
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(RedactingFormatter(LOG_FORMAT))
        handlers.append(file_handler)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    sys.excepthook = lambda kind, exc, tb: logger.critical("uncaught error", exc_info=(kind, exc, tb))
    threading.excepthook = lambda args: logger.critical(
        "uncaught error in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]  # as Python gives it
    )
