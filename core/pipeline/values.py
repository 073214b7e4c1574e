"""A source's input values written as a mapping rather than listed one per line: `{range: [START, STOP]}` (or
`[START, STOP, STEP]`, as Python's range) or `{file: PATH}` (one value per line, blank lines skipped; a `.jsonl`
or `.ndjson` file: one JSON value per line), PATH relative to the pipeline file. Read while the file is loaded,
so every later check sees the values themselves, and each problem names the file, the key and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.pipeline.problems import Checker, kind_of

MAX_VALUES = 10_000_000  # a range or a file past this is a slip (a stop of 10**12), not a source
JSON_SUFFIXES = (".jsonl", ".ndjson")


def generated_values(spec: dict[str, Any], line: int, where: str, checker: Checker) -> list[Any] | None:
    """The values `spec` stands for; None (with the problem added) when it cannot be read."""
    if set(spec) == {"range"}:
        return _range(spec["range"], line, f"{where}.range", checker)
    if set(spec) == {"file"}:
        return _file(spec["file"], line, f"{where}.file", checker)
    checker.add(
        line,
        where,
        "as a mapping, input values are {range: [START, STOP]} (or [START, STOP, STEP]) or {file: PATH}; "
        f"got the key(s) {', '.join(map(str, spec)) or 'none'}",
    )
    return None


def _range(bounds: Any, line: int, where: str, checker: Checker) -> list[Any] | None:
    numbers = bounds if isinstance(bounds, list) else None
    if (
        numbers is None
        or not 2 <= len(numbers) <= 3
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
    ):
        checker.add(line, where, f"must be [START, STOP] or [START, STOP, STEP] of integers, got {bounds!r}")
        return None
    if len(numbers) == 3 and numbers[2] == 0:
        checker.add(line, where, "STEP must not be 0")
        return None
    values = range(*numbers)
    if len(values) > MAX_VALUES:
        checker.add(line, where, f"gives {len(values):,} values; a source takes at most {MAX_VALUES:,}")
        return None
    if not values:
        checker.add(line, where, f"{bounds!r} gives no value (STOP is not past START in the STEP's direction)")
        return None
    return list(values)


def _file(name: Any, line: int, where: str, checker: Checker) -> list[Any] | None:
    if not isinstance(name, str) or not name:
        checker.add(line, where, f"must be a file's path, got {kind_of(name)}")
        return None
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = Path(checker.path).resolve().parent / path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        checker.add(line, where, f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}")
        return None
    values: list[Any] = []
    as_json = path.suffix.lower() in JSON_SUFFIXES
    for number, row in enumerate(text.splitlines(), 1):
        row = row.strip()
        if not row:
            continue
        if not as_json:
            values.append(row)
            continue
        try:
            values.append(json.loads(row))
        except json.JSONDecodeError as exc:
            checker.add(line, where, f"{path}:{number}: not a JSON value ({exc.msg})")
            return None
        if len(values) > MAX_VALUES:
            break
    if len(values) > MAX_VALUES:
        checker.add(line, where, f"{path} has more than {MAX_VALUES:,} values")
        return None
    if not values:
        checker.add(line, where, f"{path} has no value (every line is blank)")
        return None
    return values
