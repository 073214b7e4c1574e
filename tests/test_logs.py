"""core.app.logs.parse_log_level: a level in any case, or a settings error that lists the levels."""

from __future__ import annotations

import pytest

from core.app.logs import parse_log_level
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
