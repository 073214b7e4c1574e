"""core.app.logs.parse_log_level: a level in any case, or a settings error that lists the levels."""

from __future__ import annotations

import io
import logging
import re
import sys
import threading

import pytest

from core.app.logs import parse_log_level, setup_logging
from core.pipeline.config import SettingsError


@pytest.mark.parametrize(
    "text, level",
    [
        ("debug", "DEBUG"),
        ("Info", "INFO"),
        ("WARNING", "WARNING"),
        ("warn", "WARNING"),
        ("error", "ERROR"),
        ("CRITICAL", "CRITICAL"),
        ("fatal", "CRITICAL"),
        (" info\n", "INFO"),
    ],
)
def test_level_in_any_case(text, level):
    assert parse_log_level(text) == level


@pytest.mark.parametrize("text", ["verbose", "", "10", "INFO,DEBUG"])
def test_unknown_level_is_a_settings_error(text):
    with pytest.raises(SettingsError) as caught:
        parse_log_level(text)

    assert str(caught.value) == (
        f"unknown log level {text!r}: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)"
    )


@pytest.fixture
def restored_logging():
    """setup_logging replaces the root logger's handlers and the excepthooks: put them back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = handlers, level
    sys.excepthook, threading.excepthook = hooks


def test_the_terminal_and_the_file_log_write_the_same_iso_dates(tmp_path, restored_logging):
    """The live view's log lines used rich's default `[12/07/26 07:34:19]` (MM/DD/YY) beside the file's ISO dates."""
    from rich.console import Console

    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, width=200, color_system=None)
    log_file = tmp_path / "run.log"
    setup_logging("INFO", log_file=str(log_file), console=console)

    logging.getLogger("main").info("one line")

    iso = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.match(rf"^{iso} +INFO ", terminal.getvalue()), terminal.getvalue()
    assert re.match(rf"^{iso},\d{{3}} INFO ", log_file.read_text()), log_file.read_text()
    assert not re.search(r"\d\d/\d\d/\d\d", terminal.getvalue())
