"""The pipeline file: its schema, and the checks that run before any thread starts."""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from core.overrides import apply_sets, expand_env
from core.yaml_lines import LineDict, LineList, load_with_lines

DEFAULT_MAXSIZE = 1000
TOP_KEYS = ("queues", "workers")
QUEUE_KEYS = {"name": str, "description": str, "maxsize": int}
WORKER_KEYS = {
    "name": str, "description": str, "note": str, "location": str, "class": str, "instances": int,
    "input_queue": str, "output_queues": list, "input_values": list, "params": dict,
}
REQUIRED = {"queue": ("name",), "worker": ("name", "location", "class")}


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


@dataclass(frozen=True)
class QueueSpec:
    """A named bounded queue."""

    name: str
    maxsize: int = DEFAULT_MAXSIZE
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class WorkerSpec:
    """A named group of identical worker instances."""

    name: str
    location: str
    class_name: str
    instances: int = 1
    input_queue: str | None = None
    output_queues: tuple[str, ...] = ()
    input_values: tuple[Any, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    line: int = 0
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline: queues and worker groups, in file order."""

    path: str
    queues: dict[str, QueueSpec]
    workers: list[WorkerSpec]
    #: Worker classes by group name, filled by the import check.
    classes: dict[str, type] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The file's stem; names the lock and the dead-letter file."""
        return Path(self.path).stem

    def producers(self, queue: str) -> list[WorkerSpec]:
        """Groups that write to `queue`."""
        return [w for w in self.workers if queue in w.output_queues]

    def consumer(self, queue: str) -> WorkerSpec | None:
        """The one group that reads `queue` (validation refuses two)."""
        return next((w for w in self.workers if w.input_queue == queue), None)


class _Checker:
    """Collects problems with their lines while the raw file is turned into specs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def add(self, line: int, key: str, message: str) -> None:
        self.problems.append(Problem(self.path, line, key, message))

    def mapping_keys(self, raw: Any, where: str, line: int, schema: dict[str, type]) -> bool:
        """Check a mapping's keys and value types; False when it is not a mapping at all."""
        if not isinstance(raw, LineDict):
            self.add(line, where, f"must be a mapping, got {_kind(raw)}")
            return False
        for key, value in raw.items():
            if key not in schema:
                self.add(raw.line_of(key), f"{where}.{key}", f"unknown key{_did_you_mean(key, schema)}")
            elif value is not None and not _is_type(value, schema[key]):
                self.add(raw.line_of(key), f"{where}.{key}",
                         f"must be {_type_name(schema[key])}, got {_kind(value)}")
        return True


def load_pipeline(path: str | Path, *, sets: list[str] = (), env: Mapping[str, str] | None = None) -> PipelineSpec:
    """Read, validate and resolve a pipeline file; raise ConfigError naming every problem.

    ${VAR} and ${VAR:-default} in values are filled from `env` (default os.environ); each of `sets`
    (`workers.Name.key=value`) then overrides a value; the result is validated like the file itself.
    """
    path = str(path)
    checker = _Checker(path)
    raw = _read(path, checker)
    if raw is not None:
        expand_env(raw, os.environ if env is None else env, checker.add)
        apply_sets(raw, list(sets), checker.add)
        spec = _build(raw, checker)
        if not checker.problems:
            from core.imports import check_imports  # imports user modules: only once the file is sound
            from core.wiring import check_wiring

            check_wiring(spec, checker)
            check_imports(spec, checker)
        if not checker.problems:
            return spec
    raise ConfigError(checker.problems)


def _read(path: str, checker: _Checker) -> LineDict | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        checker.add(0, "file", f"cannot read pipeline file: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError as exc:
        line = Path(path).read_bytes()[: exc.start].count(b"\n") + 1
        checker.add(line, "file", f"cannot read pipeline file: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    try:
        raw = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        checker.add(mark.line + 1 if mark else 0, "yaml", f"invalid YAML: {problem}")
        return None
    if not checker.mapping_keys(raw, "pipeline", 1, {key: list for key in TOP_KEYS}):
        return None
    for key in TOP_KEYS:
        if key not in raw:
            checker.add(raw.line, key, "missing required key")
    if isinstance(raw.get("workers"), LineList) and not raw["workers"]:
        checker.add(raw.line_of("workers"), "workers", "lists no worker: there is nothing to run")
    return raw


def _build(raw: LineDict, checker: _Checker) -> PipelineSpec:
    queues: dict[str, QueueSpec] = {}
    for index, item in _entries(raw, "queues", checker):
        spec = _queue(item, f"queues[{index}]", checker)
        if spec and spec.name in queues:
            checker.add(item.line_of("name"), f"queues[{index}].name",
                        f"duplicate queue name {spec.name!r} (first on line {queues[spec.name].line})")
        elif spec:
            queues[spec.name] = spec
    workers: list[WorkerSpec] = []
    for index, item in _entries(raw, "workers", checker):
        spec = _worker(item, f"workers[{index}]", checker)
        if spec and any(w.name == spec.name for w in workers):
            checker.add(item.line_of("name"), f"workers[{index}].name", f"duplicate worker name {spec.name!r}")
        elif spec:
            workers.append(spec)
    return PipelineSpec(path=checker.path, queues=queues, workers=workers)


def _entries(raw: LineDict, key: str, checker: _Checker):
    items = raw.get(key)
    if not isinstance(items, LineList):
        return
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        schema = QUEUE_KEYS if key == "queues" else WORKER_KEYS
        if checker.mapping_keys(item, where, items.line_of(index), schema):
            yield index, item


def _required(item: LineDict, where: str, kind: str, checker: _Checker) -> bool:
    missing = [key for key in REQUIRED[kind] if not item.get(key)]
    for key in missing:
        checker.add(item.line, f"{where}.{key}", "missing required key")
    return not missing


def _queue(item: LineDict, where: str, checker: _Checker) -> QueueSpec | None:
    if not _required(item, where, "queue", checker):
        return None
    maxsize = item.get("maxsize")
    if isinstance(maxsize, int) and maxsize < 1:
        checker.add(item.line_of("maxsize"), f"{where}.maxsize", f"must be at least 1, got {maxsize}")
    if not isinstance(maxsize, int) or maxsize < 1:
        maxsize = DEFAULT_MAXSIZE
    return QueueSpec(name=str(item["name"]), maxsize=maxsize,
                     description=str(item.get("description") or ""), line=item.line)


def _worker(item: LineDict, where: str, checker: _Checker) -> WorkerSpec | None:
    if not _required(item, where, "worker", checker):
        return None
    instances = item.get("instances")
    if instances is None:
        instances = 1
    elif isinstance(instances, int) and instances < 1:
        checker.add(item.line_of("instances"), f"{where}.instances", f"must be at least 1, got {instances}")
    outputs = _as_list(item.get("output_queues"))
    if isinstance(item.get("output_queues"), list) and not all(isinstance(q, str) for q in outputs):
        checker.add(item.line_of("output_queues"), f"{where}.output_queues", "must be a list of queue names")
    values = item.get("input_values")
    values = None if values is None else _as_list(values)
    if (values is None) == (item.get("input_queue") is None):
        checker.add(item.line, where, "needs exactly one of input_queue (to read a queue) "
                                      "or input_values (to be a source)")
    return WorkerSpec(
        name=str(item["name"]), location=str(item["location"]), class_name=str(item["class"]),
        instances=instances if isinstance(instances, int) else 1,
        input_queue=item.get("input_queue"), output_queues=tuple(str(q) for q in outputs),
        input_values=None if values is None else tuple(values),
        params=item.get("params") or {}, description=str(item.get("description") or ""),
        line=item.line, key_lines={**item.key_lines, **_item_lines(item.get("output_queues"), "output_queues")},
    )


def _item_lines(value: Any, key: str) -> dict[str, int]:
    """Lines of a list's items as `key[i]`, so a bad queue name points at its own line."""
    return {f"{key}[{i}]": line for i, line in enumerate(value.item_lines)} if isinstance(value, LineList) else {}


def _as_list(value: Any) -> list[Any]:
    """A list as is; one value (a queue name, a URL) as a list of one; nothing as an empty list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _did_you_mean(word: Any, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_type(value: Any, expected: type) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is list and isinstance(value, str):
        return True  # a single queue name is read as a one-item list
    return isinstance(value, expected)


def _type_name(expected: type) -> str:
    return {int: "an integer", str: "a string", list: "a list", dict: "a mapping"}[expected]


def _kind(value: Any) -> str:
    return {LineDict: "a mapping", LineList: "a list", bool: "a boolean", int: "an integer",
            float: "a number", str: "a string", type(None): "nothing"}.get(type(value), type(value).__name__)
