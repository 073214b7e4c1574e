"""--fix-tests: write what each test got as its expectation, into the test file, keeping its comments, its order
and every key the run does not answer (ruamel.yaml's round trip). A time of the run itself (an extracted_time)
would never be got again: such fields are left out of what is written."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.app.pipeline_tests.runner import Result

ERROR_CHARS = 120


def fix_tests(path: Path, results: list[Result]) -> int:
    """Write the expectations of `results` into `path`; how many tests were written."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    text = path.read_text(encoding="utf-8")
    data, indent, dash = load_yaml_guess_indent(text)  # written back as the file was indented
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # a line as long as the file had it: wrapping would split an item over lines
    sequence, dash = indent or 2, dash or 0  # "  - name:" is a sequence indent of 4, its dash at 2
    yaml.indent(mapping=max(sequence - dash, 2), sequence=sequence, offset=dash)
    data = yaml.load(text)
    for result in results:
        got = result.got
        if got is None:
            continue
        expect = data["tests"][result.case.index].setdefault("expect", {})
        trailing = _take_trailing(expect)  # the comment after the expectation: the next test's heading
        window = (got.started, got.ended)
        judged = {"count", "contains", "each"} & set(expect)  # what the test says of them instead of listing them
        if result.case.queue and ("outputs" in expect or not judged):
            _put(expect, "outputs", [_stable(item, window) for item in got.outputs or []])
        if got.rows is not None and ("rows" in expect or not (judged or result.case.group)):
            _put(expect, "rows", [_stable(row, window) for row in got.rows])
        if "count" in expect:
            expect["count"] = len((got.outputs if result.case.group else got.rows) or [])
        if got.dead_letters or "dead_letters" in expect:
            expect["dead_letters"] = [_letter(letter) for letter in got.dead_letters]
        for key in ("exit_code", "finish_reason"):
            if key in expect:
                expect[key] = getattr(got, key)
        _put_trailing(expect, trailing)
    with path.open("w", encoding="utf-8") as file:
        yaml.dump(data, file)
    return sum(result.got is not None for result in results)


def _put(expect: Any, key: str, items: list[Any]) -> None:
    """Set expect[key] to `items`, written in flow style ([a, b]) when the list it replaces was."""
    from ruamel.yaml.comments import CommentedSeq

    old = expect.get(key)
    if old is not None and _plain(old) == items:
        return  # as it was: left as written, comments and all
    new = CommentedSeq(items)
    if isinstance(old, CommentedSeq) and old.fa.flow_style():
        new.fa.set_flow_style()
    expect[key] = new


def _last(node: Any) -> tuple[Any, Any] | None:
    """(container, key) of the last item of `node` at its deepest level: where ruamel keeps a comment after it."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    found = None
    while isinstance(node, (CommentedMap, CommentedSeq)) and len(node):
        key = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
        found, node = (node, key), node[key]
    return found


def _take_trailing(expect: Any) -> Any:
    """Remove and return the comment after the last item of `expect` (None if there is none)."""
    from ruamel.yaml.comments import CommentedMap

    last = _last(expect)
    if last is None:
        return None
    container, key = last
    slots = container.ca.items.get(key)
    if not slots:
        return None
    slot = 2 if isinstance(container, CommentedMap) else 0
    token, slots[slot] = slots[slot], None
    return token


def _put_trailing(expect: Any, token: Any) -> None:
    from ruamel.yaml.comments import CommentedMap

    last = _last(expect)
    if token is None or last is None:
        return
    container, key = last
    mapping = isinstance(container, CommentedMap)
    slots = container.ca.items.setdefault(key, [None, None, None, None] if mapping else [None, None])
    slots[2 if mapping else 0] = token


def _letter(letter: dict[str, Any]) -> dict[str, Any]:
    error = str(letter.get("error") or "").split(" (")[0][:ERROR_CHARS]
    return {
        "item": _plain(letter.get("item")),
        "kind": letter.get("kind"),
        "error_matches": re.escape(error).replace("\\ ", " "),
    }


def _stable(value: Any, window: tuple[datetime, datetime]) -> Any:
    """`value` without the fields that hold a time of the run (they differ every run)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not _of_the_run(v, window)}
    return _plain(value)


def _of_the_run(value: Any, window: tuple[datetime, datetime]) -> bool:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return False
    if not isinstance(value, datetime):
        return False
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return window[0] <= moment <= window[1]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
