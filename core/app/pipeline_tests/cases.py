"""A pipeline's test file (PIPELINE.tests.yaml), read and checked like the pipeline file: every problem as
`file:line: key: message`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.pipeline.problems import Checker, ConfigError, did_you_mean, kind_of
from core.pipeline.specs import PipelineSpec
from core.pipeline.yaml_lines import LineDict, LineList, load_with_lines, plain
from core.run.report import FINISH_REASONS

TEST_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "group": str,
    "inputs": list,
    "params": dict,
    "input_values": dict,
    "http": str,
    "responses": list,
    "queue": str,
    "timeout_s": (int, float),
    "expect": dict,
}
EXPECT_KEYS: dict[str, type | tuple[type, ...]] = {
    "outputs": list,
    "in_order": bool,
    "count": int,
    "contains": list,
    "each": dict,
    "rows": list,
    "table": str,
    "dead_letters": list,
    "exit_code": int,
    "finish_reason": str,
}
RESPONSE_KEYS: dict[str, type | tuple[type, ...]] = {
    "url": str,
    "method": str,
    "status": int,
    "headers": dict,
    "body": str,
    "file": str,
}
DEAD_LETTER_KEYS: dict[str, type | tuple[type, ...]] = {"item": object, "kind": str, "error_matches": str}
CONDITION_KEYS = frozenset({"equals", "approx", "tolerance", "matches", "type"})
TYPES = ("text", "str", "int", "float", "number", "bool", "datetime", "list", "dict", "null")
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Case:
    """One test: a stage test when `group` is set, else a pipeline test."""

    name: str
    line: int
    index: int
    group: str | None = None
    inputs: list[Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    input_values: dict[str, list[Any]] = field(default_factory=dict)
    http: Path | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)
    queue: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "stage" if self.group else "pipeline"


def tests_path_of(pipeline: Path) -> Path:
    """Where a pipeline's tests are by default: PIPELINE.tests.yaml beside it."""
    return pipeline.with_name(f"{pipeline.stem}.tests.yaml")


def load_cases(path: Path, spec: PipelineSpec) -> list[Case]:
    """The tests in `path`, checked against the pipeline `spec`; ConfigError with every problem."""
    checker = Checker(str(path))
    try:
        raw = load_with_lines(path.read_text(encoding="utf-8"))
    except OSError as exc:
        checker.add(0, "tests", f"cannot read the test file ({exc.strerror})")
        raise ConfigError(checker.problems) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        checker.add(mark.line + 1 if mark else 0, "tests", f"not valid YAML: {getattr(exc, 'problem', exc)}")
        raise ConfigError(checker.problems) from None
    if not checker.mapping_keys(raw, "tests", 1, {"tests": list}):
        raise ConfigError(checker.problems)
    tests = raw.get("tests")
    if not isinstance(tests, LineList) or not tests:
        checker.add(raw.line_of("tests"), "tests", "must be a list of tests, each with a name and expect")
        raise ConfigError(checker.problems)
    cases, names = [], set()
    for index, test in enumerate(tests):
        case = _case(checker, test, index, tests.line_of(index), spec, path.parent)
        if case is None:
            continue
        if case.name in names:
            checker.add(case.line, f"tests[{index}].name", f"{case.name!r} is the name of another test too")
        names.add(case.name)
        cases.append(case)
    if checker.problems:
        raise ConfigError(checker.in_file_order())
    return cases


def _case(checker: Checker, raw: Any, index: int, line: int, spec: PipelineSpec, folder: Path) -> Case | None:
    where = f"tests[{index}]"
    if not checker.mapping_keys(raw, where, line, TEST_KEYS):
        return None
    before = len(checker.problems)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        checker.add(raw.line, f"{where}.name", "missing: every test has a name")
    groups = {worker.name: worker for worker in spec.workers}
    group = raw.get("group")
    if isinstance(group, str) and group not in groups:
        checker.add(raw.line_of("group"), f"{where}.group", f"no such worker group{did_you_mean(group, groups)}")
    if isinstance(group, str) and group in groups and groups[group].input_queue and "inputs" not in raw:
        checker.add(raw.line, f"{where}.inputs", f"missing: the items given to {group} (on its input queue)")
    if "inputs" in raw and group is None:
        checker.add(raw.line_of("inputs"), f"{where}.inputs", "inputs go to a stage: give its group too")
    if "input_values" in raw:
        if group is not None:
            checker.add(raw.line_of("input_values"), f"{where}.input_values", "a stage test gives inputs instead")
        for source, values in (raw.get("input_values") or {}).items():
            key = f"{where}.input_values.{source}"
            if source not in groups:
                checker.add(
                    raw["input_values"].line_of(source), key, f"no such worker group{did_you_mean(source, groups)}"
                )
            elif not isinstance(values, list):
                checker.add(raw["input_values"].line_of(source), key, f"must be a list, got {kind_of(values)}")
    _check_params(checker, raw, where, group, groups)
    if "http" in raw and "responses" in raw:
        checker.add(raw.line_of("responses"), f"{where}.responses", "give http (a cassette folder) or responses")
    http = raw.get("http")
    if isinstance(http, str) and not (folder / http).is_dir():
        checker.add(raw.line_of("http"), f"{where}.http", f"no such folder: {folder / http}")
    for number, response in enumerate(raw.get("responses") or []):
        _check_response(checker, response, f"{where}.responses[{number}]", raw["responses"].line_of(number), folder)
    queue = raw.get("queue")
    if isinstance(queue, str) and isinstance(group, str) and group in groups:
        outputs = groups[group].output_queues
        if queue not in outputs:
            checker.add(
                raw.line_of("queue"), f"{where}.queue", f"not an output queue of {group}{did_you_mean(queue, outputs)}"
            )
    timeout = raw.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout <= 0:
        checker.add(raw.line_of("timeout_s"), f"{where}.timeout_s", f"must be more than 0, got {timeout!r}")
    _check_expect(checker, raw, where, stage=isinstance(group, str))
    if len(checker.problems) > before:
        return None
    return Case(
        name=name,
        line=raw.line,
        index=index,
        group=group,
        inputs=plain(raw.get("inputs")) if "inputs" in raw else None,
        params=plain(raw.get("params") or {}),
        input_values=plain(raw.get("input_values") or {}),
        http=(folder / http).resolve() if isinstance(http, str) else None,
        responses=[_response(plain(r), folder) for r in raw.get("responses") or []],
        queue=queue or (groups[group].output_queues[:1] or [None])[0] if isinstance(group, str) else None,
        timeout_s=float(timeout),
        expect=plain(raw.get("expect")),
    )


def _check_params(checker: Checker, raw: LineDict, where: str, group: Any, groups: dict[str, Any]) -> None:
    params = raw.get("params")
    if not isinstance(params, LineDict) or isinstance(group, str):
        return  # a stage test's params are the group's own, checked when its run starts
    for name, value in params.items():  # a pipeline test's: per group
        if name not in groups:
            checker.add(
                params.line_of(name), f"{where}.params.{name}", f"no such worker group{did_you_mean(name, groups)}"
            )
        elif not isinstance(value, dict):
            checker.add(
                params.line_of(name), f"{where}.params.{name}", f"must be a mapping of params, got {kind_of(value)}"
            )


def _check_response(checker: Checker, raw: Any, where: str, line: int, folder: Path) -> None:
    if not checker.mapping_keys(raw, where, line, RESPONSE_KEYS):
        return
    if not isinstance(raw.get("url"), str):
        checker.add(raw.line, f"{where}.url", "missing: the URL this answers")
    status = raw.get("status", 200)
    if isinstance(status, int) and not 100 <= status <= 599:
        checker.add(raw.line_of("status"), f"{where}.status", f"must be an HTTP status (100-599), got {status}")
    if "body" in raw and "file" in raw:
        checker.add(raw.line_of("file"), f"{where}.file", "give body or file, not both")
    file = raw.get("file")
    if isinstance(file, str) and not (folder / file).is_file():
        checker.add(raw.line_of("file"), f"{where}.file", f"no such file: {folder / file}")


def _response(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    body = (folder / raw["file"]).read_bytes() if "file" in raw else str(raw.get("body", "")).encode()
    headers = [[str(k), str(v)] for k, v in (raw.get("headers") or {}).items()]
    return {
        "method": raw.get("method", "GET"),
        "url": raw["url"],
        "status": raw.get("status", 200),
        "headers": headers,
        "body": body,
    }


def _check_expect(checker: Checker, raw: LineDict, where: str, *, stage: bool) -> None:
    expect = raw.get("expect")
    if "expect" not in raw:
        checker.add(raw.line, f"{where}.expect", "missing: what the test expects (outputs, rows, dead_letters, ...)")
        return
    if not checker.mapping_keys(expect, f"{where}.expect", raw.line_of("expect"), EXPECT_KEYS):
        return
    assert isinstance(expect, LineDict)
    if "outputs" in expect and not stage:
        checker.add(
            expect.line_of("outputs"), f"{where}.expect.outputs", "outputs are a stage's: give group, or expect rows"
        )
    reason = expect.get("finish_reason")
    if isinstance(reason, str) and reason not in FINISH_REASONS:
        checker.add(
            expect.line_of("finish_reason"),
            f"{where}.expect.finish_reason",
            f"not a finish reason{did_you_mean(reason, FINISH_REASONS)}",
        )
    each = expect.get("each")
    if isinstance(each, LineDict):
        for key, condition in each.items():
            _check_condition(checker, condition, f"{where}.expect.each.{key}", each.line_of(key))
    for number, letter in enumerate(expect.get("dead_letters") or []):
        key, line = f"{where}.expect.dead_letters[{number}]", expect["dead_letters"].line_of(number)
        if checker.mapping_keys(letter, key, line, DEAD_LETTER_KEYS) and "item" not in letter:
            checker.add(letter.line, f"{key}.item", "missing: the item that was dead-lettered")


def _check_condition(checker: Checker, condition: Any, where: str, line: int) -> None:
    if not is_condition(condition):
        return  # a value: equal to it
    kind = condition.get("type")
    if kind is not None and kind not in TYPES:
        checker.add(line, f"{where}.type", f"not a type{did_you_mean(kind, TYPES)} (one of {', '.join(TYPES)})")
    if "approx" in condition and not _is_number(condition["approx"]):
        checker.add(line, f"{where}.approx", f"must be a number, got {kind_of(condition['approx'])}")
    if "tolerance" in condition and not _is_number(condition["tolerance"]):
        checker.add(line, f"{where}.tolerance", f"must be a number, got {kind_of(condition['tolerance'])}")
    if "matches" in condition:
        import re

        try:
            re.compile(str(condition["matches"]))
        except re.error as exc:
            checker.add(line, f"{where}.matches", f"not a regular expression: {exc}")


def is_condition(value: Any) -> bool:
    """A mapping of condition keys only ({approx: 1.5}, {type: datetime}, {matches: '^A'}) is a condition."""
    return isinstance(value, dict) and bool(value) and set(value) <= CONDITION_KEYS


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
