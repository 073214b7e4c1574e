"""Problems found in a pipeline file or a setting, and the checker that collects them with their lines."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.pipeline.yaml_lines import LineDict, LineList


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a pipeline file, printed as `file:line: key: message`."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = getattr(self.line, "origin", None) or f"{self.file}:{self.line}"  # --set values name the flag
        return f"{where}: {self.key}: {self.message}"


class ConfigError(Exception):
    """The pipeline file cannot run; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class SettingsError(ValueError):
    """A setting from the environment (not the pipeline file) cannot be used; the run exits 2."""


class Checker:
    """Collects problems with their lines while the raw file is turned into specs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def add(self, line: int, key: str, message: str) -> None:
        """Record one problem."""
        self.problems.append(Problem(self.path, line, key, message))

    def has_problem(self, key: str, *, below: bool = True) -> bool:
        """Whether a problem was recorded for `key` (or, with `below`, for anything inside it)."""
        return any(p.key == key or (below and p.key.startswith((key + ".", key + "["))) for p in self.problems)

    def in_file_order(self) -> list[Problem]:
        """The problems of --set arguments first (what they break in the file follows them), then the file's by line."""
        return sorted(self.problems, key=lambda p: (not hasattr(p.line, "origin"), p.line))

    def mapping_keys(self, raw: Any, where: str, line: int, schema: dict[str, type | tuple[type, ...]]) -> bool:
        """Check a mapping's keys and value types; False when it is not a mapping at all."""
        if not isinstance(raw, LineDict):
            self.add(line, where, f"must be a mapping, got {kind_of(raw)}")
            return False
        for key, value in raw.items():
            if key not in schema:
                self.add(raw.line_of(key), f"{where}.{key}", f"unknown key{did_you_mean(key, schema)}")
            elif value is not None and not _is_type(value, schema[key]):
                self.add(raw.line_of(key), f"{where}.{key}", f"must be {_type_name(schema[key])}, got {kind_of(value)}")
        return True


def did_you_mean(word: Any, choices: Iterable[Any]) -> str:
    """`; did you mean 'x'?` for the closest of `choices` (the same in another case, a close spelling, or a name
    that starts with or holds it: `Yahoo` for `YahooFinanceWorker`), or "" when none is close."""
    text, names = str(word), [str(c) for c in choices]
    lowered = text.lower()
    close = [name for name in names if name.lower() == lowered] or difflib.get_close_matches(text, names, n=1)
    if not close and len(text) >= 3:
        close = [name for name in names if name.lower().startswith(lowered)] or [
            name for name in names if lowered in name.lower()
        ]
    return f"; did you mean {close[0]!r}?" if close else ""


def kind_of(value: Any) -> str:
    """'a mapping', 'a list', 'an integer', 'nothing'... for a message about a value's type."""
    return {
        LineDict: "a mapping",
        LineList: "a list",
        dict: "a mapping",
        list: "a list",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _is_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    if isinstance(expected, tuple):
        return any(_is_type(value, one) for one in expected)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is list and isinstance(value, str):
        return True  # a single queue name is read as a one-item list
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_type_name(one) for one in expected)
    return {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}[expected]
