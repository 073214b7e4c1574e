"""What a test expected against what its run did: each difference as a readable block (a diff of the items,
one per line, `- expected` and `+ got`)."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import yaml

from core.app.pipeline_tests.cases import Case, is_condition

#: How a run that ran through ends: "failed" when items failed and nothing reached a sink (a source that failed).
RAN_THROUGH = ("finished", "failed")


@dataclass
class Got:
    """What a test's run did."""

    exit_code: int
    finish_reason: str
    outputs: list[Any] | None = None  # a stage test's, from the queue it looks at
    rows: list[dict[str, Any]] | None = None  # what the sink stored, when it stored anything
    dead_letters: list[dict[str, Any]] = field(default_factory=list)  # item, kind, error
    started: datetime = datetime.min.replace(tzinfo=UTC)  # when the run started and ended (UTC)
    ended: datetime = datetime.max.replace(tzinfo=UTC)


def differences(case: Case, got: Got) -> list[str]:
    """Each way the run differs from what `case` expects; none when it passed."""
    expect, found = case.expect, []
    items = got.outputs if case.group else got.rows
    in_order = bool(expect.get("in_order", False))
    if "outputs" in expect:
        found += _compare("outputs", expect["outputs"], got.outputs or [], in_order)
    if "rows" in expect:
        found += _compare("rows", expect["rows"], got.rows or [], in_order)
    what = "outputs" if case.group else "rows"
    if "count" in expect and len(items or []) != expect["count"]:
        found.append(f"count: expected {expect['count']} {what}, got {len(items or [])}")
    for wanted in expect.get("contains") or []:
        if not any(meets(wanted, item) for item in items or []):
            found.append(f"contains: no {what[:-1]} is {line(wanted)}")
    for field_name, condition in (expect.get("each") or {}).items():
        bad = [item for item in items or [] if not meets(condition, _field(item, field_name))]
        if bad:
            count = f"{len(bad)} of {len(items or [])} {what}"
            found.append(f"each.{field_name}: {count} are not {line(condition)}, e.g. {line(bad[0])}")
    letters = [{"item": d.get("item"), "kind": d.get("kind"), "error": d.get("error")} for d in got.dead_letters]
    if "dead_letters" in expect:
        wanted = [_letter_pattern(letter) for letter in expect["dead_letters"]]
        found += _compare("dead_letters", wanted, letters, False)
    elif letters:
        found.append("dead_letters: none expected, got:\n" + "\n".join(f"  + {line(letter)}" for letter in letters))
    if "exit_code" in expect and got.exit_code != expect["exit_code"]:
        found.append(f"exit_code: expected {expect['exit_code']}, got {got.exit_code}")
    reason = expect.get("finish_reason")
    if reason is not None and got.finish_reason != reason:
        found.append(f"finish_reason: expected {reason}, got {got.finish_reason}")
    elif reason is None and "exit_code" not in expect and got.finish_reason not in RAN_THROUGH:
        found.append(f"finish_reason: the run ended {got.finish_reason}, not having run through")
    return found


def _letter_pattern(letter: dict[str, Any]) -> dict[str, Any]:
    pattern: dict[str, Any] = {"item": letter.get("item")}
    if "kind" in letter:
        pattern["kind"] = letter["kind"]
    if "error_matches" in letter:
        pattern["error"] = {"matches": letter["error_matches"]}
    return pattern


def _field(item: Any, name: str) -> Any:
    """A field of an output or row; `value` is the item itself when it is not a mapping."""
    if isinstance(item, dict):
        return item.get(name, _MISSING)
    return item if name == "value" else _MISSING


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING = _Missing()


def _compare(what: str, expected: list[Any], got: list[Any], in_order: bool) -> list[str]:
    """The items as expected (all of them, no more), as a diff when they are not."""
    if in_order:
        same = len(expected) == len(got) and all(meets(e, g) for e, g in zip(expected, got, strict=True))
        shown_got = [
            line(expected[i]) if i < len(expected) and meets(expected[i], g) else line(g) for i, g in enumerate(got)
        ]
    else:
        left = list(range(len(got)))
        shown_got, unmatched = [], []
        for wanted in expected:
            match = next((i for i in left if meets(wanted, got[i])), None)
            if match is None:
                unmatched.append(wanted)
            else:
                left.remove(match)
                shown_got.append(line(wanted))
        same = not unmatched and not left
        shown_got += [line(got[i]) for i in left]
    if same:
        return []
    shown_expected = [line(item) for item in expected]
    diff = [
        d
        for d in difflib.unified_diff(shown_expected, shown_got, lineterm="", n=2)
        if not d.startswith(("---", "+++", "@@"))
    ]
    order = "in order" if in_order else "in any order"
    return [
        f"{what} differ ({len(expected)} expected {order}, {len(got)} got; - expected, + got):\n"
        + "\n".join(f"  {d}" for d in diff)
    ]


def meets(expected: Any, got: Any) -> bool:
    """Whether `got` is what `expected` says: equal to it, or meeting it when it is a condition; a mapping compares
    the keys it names only; a naive datetime is taken as UTC."""
    if is_condition(expected):
        return _meets_condition(expected, got)
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(key in got and meets(value, got[key]) for key, value in expected.items())
    if isinstance(expected, list):
        return isinstance(got, (list, tuple)) and len(expected) == len(got) and all(map(meets, expected, got))
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, datetime) and isinstance(got, datetime):
        return _utc(expected) == _utc(got)
    if isinstance(expected, datetime) and isinstance(got, str):
        try:
            return _utc(expected) == _utc(datetime.fromisoformat(got))
        except ValueError:
            return False
    return bool(expected == got)


def _meets_condition(condition: dict[str, Any], got: Any) -> bool:
    if "equals" in condition and not meets(condition["equals"], got):
        return False
    if "approx" in condition:
        if not _number(got):
            return False
        target = float(condition["approx"])
        tolerance = float(condition.get("tolerance", 1e-6 * max(1.0, abs(target))))
        if not math.isclose(float(got), target, rel_tol=0.0, abs_tol=tolerance):
            return False
    if "matches" in condition and (got is _MISSING or re.search(str(condition["matches"]), str(got)) is None):
        return False
    return "type" not in condition or _is_type(got, condition["type"])


def _is_type(value: Any, kind: str) -> bool:
    checks = {
        "text": lambda v: isinstance(v, str),
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, float),
        "number": _number,
        "bool": lambda v: isinstance(v, bool),
        "datetime": lambda v: isinstance(v, (datetime, date)),
        "list": lambda v: isinstance(v, (list, tuple)),
        "dict": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    return bool(checks[kind](value))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _shown(value: Any) -> Any:
    """Times as their ISO text: YAML would write `!!timestamp '...'`."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _shown(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(item) for item in value]
    return value


def line(value: Any) -> str:
    """A value on one line, as YAML writes it."""
    if value is _MISSING:
        return "(missing)"
    value = _shown(value)
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=2**31, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        return repr(value)
    return text.strip().removesuffix("...").strip()
