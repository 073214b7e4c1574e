"""The pipeline file: its schema, and the checks that run before any thread starts."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from core.base.paths import missing_pipeline_hint
from core.pipeline.imports import check_imports
from core.pipeline.overrides import apply_sets, expand_env
from core.pipeline.problems import Checker, ConfigError, Problem, SettingsError, did_you_mean, kind_of
from core.pipeline.specs import DEFAULT_MAXSIZE, QUEUE_BACKENDS, PipelineSpec, QueueSpec, WorkerSpec
from core.pipeline.wiring import check_wiring
from core.pipeline.yaml_limits import LoadLimitError
from core.pipeline.yaml_lines import LineDict, LineList, load_with_lines

__all__ = ["ConfigError", "PipelineSpec", "Problem", "QueueSpec", "SettingsError", "WorkerSpec", "load_pipeline"]

TOP_KEYS = ("queues", "workers")
QUEUE_KEYS = {
    "name": str,
    "description": str,
    "maxsize": int,
    "backend": str,
    "visibility_timeout_s": float,
    "max_deliveries": int,
}
WORKER_KEYS = {
    "name": str,
    "description": str,
    "note": str,
    "location": str,
    "class": str,
    "instances": int,
    "processes": int,
    "input_queue": str,
    "output_queues": list,
    "input_values": list,
    "params": dict,
}
REQUIRED = {"queue": ("name",), "worker": ("name", "location", "class")}
# The keys the wiring and the import checks read. A check runs on a worker entry only when these keys have no
# problem of their own, so a broken entry is reported once, not again as the echoes of its problem.
WIRING_KEYS = ("name", "input_queue", "output_queues", "input_values")
IMPORT_KEYS = ("location", "class", "params")
# A group's instances are built before anything runs (--check too), each a thread or an asyncio task, and each
# of its processes is started: past these, a slip such as `instances: 100000000` would take all the memory of
# the machine instead of being named. Real groups stay far below (the README's largest use 128 tasks).
MAX_INSTANCES = 10_000  # in all of a group's processes together
MAX_PROCESSES = 256


def load_pipeline(path: str | Path, *, sets: Sequence[str] = (), env: Mapping[str, str] | None = None) -> PipelineSpec:
    """Read, validate and resolve a pipeline file; raise ConfigError naming every problem, in file order.

    ${VAR} and ${VAR:-default} in values are filled from `env` (default os.environ); each of `sets`
    (`workers.Name.key=value`) then overrides a value; the result is validated like the file itself.
    """
    path = str(path)
    checker = Checker(path)
    raw = _read(path, checker)
    if raw is not None:
        expand_env(raw, os.environ if env is None else env, checker.add)
        apply_sets(raw, list(sets), checker.add)
        spec, entry_of, complete = _build(raw, checker)
        _check_sound_entries(spec, entry_of, complete, checker)
        if not checker.problems:
            return spec
    raise ConfigError(checker.in_file_order())


def _check_sound_entries(spec: PipelineSpec, entry_of: dict[str, str], complete: set[str], checker: Checker) -> None:
    """Wiring of the workers whose queue keys are sound; import and params of those whose class keys are."""

    def sound(worker: WorkerSpec, keys: tuple[str, ...], *, whole: bool) -> bool:
        where = entry_of[worker.name]
        if whole and checker.has_problem(where, below=False):
            return False
        return not any(checker.has_problem(f"{where}.{key}") for key in keys)

    wired = [w for w in spec.workers if sound(w, WIRING_KEYS, whole=True)]
    check_wiring(
        replace(spec, workers=wired),
        checker,
        queues_known="queues" in complete,
        workers_known="workers" in complete and len(wired) == len(spec.workers),
    )
    importable = [w for w in spec.workers if sound(w, IMPORT_KEYS, whole=False)]
    if importable:
        spec.classes.update(check_imports(importable, checker, pipeline_path=spec.path))


def _read(path: str, checker: Checker) -> LineDict | None:
    try:
        # Read as a stream, in PyYAML's chunks: given the whole text, PyYAML keeps a copy of it beside ours.
        with open(path, encoding="utf-8") as stream:
            raw = load_with_lines(stream)
    except OSError as exc:
        hint = missing_pipeline_hint(path) if isinstance(exc, FileNotFoundError) else ""
        checker.add(0, "file", f"cannot read pipeline file: {exc.strerror or exc}{hint}")
        return None
    except UnicodeDecodeError:
        data = Path(path).read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:  # again on the whole file: the stream's error counts from its chunk
            line = data[: exc.start].count(b"\n") + 1
            checker.add(line, "file", f"cannot read pipeline file: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; it knows only its position
        line = Path(path).read_text(encoding="utf-8")[: exc.position].count("\n") + 1
        checker.add(
            line,
            "yaml",
            f"invalid YAML: unacceptable character #x{exc.character:04x} (write it as an "
            "escape in a double-quoted string)",
        )
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        prefix = "" if isinstance(exc, LoadLimitError) else "invalid YAML: "  # valid YAML, refused for its size
        checker.add(mark.line + 1 if mark else 0, "yaml", prefix + problem)
        return None
    if not checker.mapping_keys(raw, "pipeline", 1, {key: list for key in TOP_KEYS}):
        return None
    for key in TOP_KEYS:
        if key not in raw:
            checker.add(raw.line, key, "missing required key")
        elif not isinstance(raw[key], LineList) and not checker.has_problem(f"pipeline.{key}"):
            # The schema lets nothing pass, and text as a list of one (right for output_queues, not here).
            checker.add(
                raw.line_of(key), f"pipeline.{key}", f"must be a list (write [] for none), got {kind_of(raw[key])}"
            )
    if isinstance(raw.get("workers"), LineList) and not raw["workers"]:
        checker.add(raw.line_of("workers"), "workers", "lists no worker: there is nothing to run")
    return raw


def _build(raw: LineDict, checker: Checker) -> tuple[PipelineSpec, dict[str, str], set[str]]:
    """The specs of the entries that have their required keys; each worker's entry (`workers[i]`) by name;
    and the sections whose every entry made a spec (their names, and for workers their queues, are all known)."""
    complete = set(TOP_KEYS)
    queues: dict[str, QueueSpec] = {}
    for index, item in _entries(raw, "queues", checker, complete):
        spec = _queue(item, f"queues[{index}]", checker)
        if spec is None:
            complete.discard("queues")
        elif spec.name in queues:
            checker.add(
                item.line_of("name"),
                f"queues[{index}].name",
                f"duplicate queue name {spec.name!r} (first on line {queues[spec.name].line})",
            )
        else:
            queues[spec.name] = spec
    workers: list[WorkerSpec] = []
    entry_of: dict[str, str] = {}
    for index, item in _entries(raw, "workers", checker, complete):
        worker = _worker(item, f"workers[{index}]", checker)
        if worker is None or worker.name in entry_of:
            complete.discard("workers")
        if worker and worker.name in entry_of:
            checker.add(item.line_of("name"), f"workers[{index}].name", f"duplicate worker name {worker.name!r}")
        elif worker:
            workers.append(worker)
            entry_of[worker.name] = f"workers[{index}]"
    return PipelineSpec(path=checker.path, queues=queues, workers=workers), entry_of, complete


def _entries(raw: LineDict, key: str, checker: Checker, complete: set[str]) -> Iterator[tuple[int, LineDict]]:
    items = raw.get(key)
    if not isinstance(items, LineList):
        complete.discard(key)
        return
    schema = QUEUE_KEYS if key == "queues" else WORKER_KEYS
    for index, item in enumerate(items):
        if checker.mapping_keys(item, f"{key}[{index}]", items.line_of(index), schema):
            yield index, item
        else:
            complete.discard(key)


def _required(item: LineDict, where: str, kind: str, checker: Checker) -> bool:
    """Whether the entry has each required key as text; a missing one is reported here, one of another type
    was by the schema (a name that is a list would otherwise name a queue or group in later messages)."""
    missing = [key for key in REQUIRED[kind] if not item.get(key)]
    for key in missing:
        checker.add(item.line, f"{where}.{key}", "missing required key")
    return not missing and all(isinstance(item[key], str) for key in REQUIRED[kind])


def _queue(item: LineDict, where: str, checker: Checker) -> QueueSpec | None:
    if not _required(item, where, "queue", checker):
        return None
    backend = item.get("backend")
    if isinstance(backend, str) and backend not in QUEUE_BACKENDS:
        checker.add(
            item.line_of("backend"),
            f"{where}.backend",
            f"must be {' or '.join(map(repr, QUEUE_BACKENDS))}, got {backend!r}{did_you_mean(backend, QUEUE_BACKENDS)}",
        )
    visibility = item.get("visibility_timeout_s", 30.0)
    if (
        isinstance(visibility, (int, float)) and not isinstance(visibility, bool) and not (0 < visibility < math.inf)
    ):  # nan and inf would pass `<= 0`, and Redis takes milliseconds
        checker.add(
            item.line_of("visibility_timeout_s"),
            f"{where}.visibility_timeout_s",
            f"must be more than 0 (and finite), got {visibility}",
        )
    return QueueSpec(
        name=str(item["name"]),
        maxsize=_at_least(item, "maxsize", 1, DEFAULT_MAXSIZE, where, checker),
        backend=backend if backend in QUEUE_BACKENDS else "local",
        visibility_timeout_s=float(visibility) if isinstance(visibility, (int, float)) else 30.0,
        max_deliveries=_at_least(item, "max_deliveries", 1, 5, where, checker),
        description=str(item.get("description") or ""),
        line=item.line,
    )


def _worker(item: LineDict, where: str, checker: Checker) -> WorkerSpec | None:
    if not _required(item, where, "worker", checker):
        return None
    instances = _at_least(item, "instances", 1, 1, where, checker, most=MAX_INSTANCES)
    processes = _at_least(item, "processes", 0, 0, where, checker, most=MAX_PROCESSES)
    if instances * max(processes, 1) > MAX_INSTANCES:
        checker.add(
            item.line_of("instances"),
            f"{where}.instances",
            f"{processes} processes x {instances} instances "
            f"each is {instances * processes:,} instances; a group has at most {MAX_INSTANCES:,}",
        )
    outputs = _as_list(item.get("output_queues"))
    if isinstance(item.get("output_queues"), list) and not all(isinstance(q, str) for q in outputs):
        checker.add(item.line_of("output_queues"), f"{where}.output_queues", "must be a list of queue names")
    params = item.get("params")
    for key in params if isinstance(params, dict) else ():  # a plain dict when it came from --set
        if not isinstance(key, str):  # it could never be a keyword argument of the class
            line = params.line_of(key) if isinstance(params, LineDict) else item.line_of("params")
            checker.add(
                line,
                f"{where}.params",
                f"a parameter's name is text, got {kind_of(key)} {key!r} (YAML reads "
                "an unquoted on/off/yes/no as a boolean and digits as a number: quote it)",
            )
    values = item.get("input_values")
    values = None if values is None else values if isinstance(values, list) else _as_list(values)
    if (values is None) == (item.get("input_queue") is None):
        checker.add(
            item.line, where, "needs exactly one of input_queue (to read a queue) or input_values (to be a source)"
        )
    return WorkerSpec(
        name=str(item["name"]),
        location=str(item["location"]),
        class_name=str(item["class"]),
        instances=instances,
        processes=processes,
        input_queue=item.get("input_queue"),
        output_queues=tuple(str(q) for q in outputs),
        input_values=None if values is None else tuple(values),
        params=item.get("params") or {},
        description=str(item.get("description") or ""),
        line=item.line,
        key_lines={**item.key_lines, **_item_lines(item.get("output_queues"), "output_queues")},
    )


def _at_least(
    item: LineDict, key: str, minimum: int, default: int, where: str, checker: Checker, *, most: int | None = None
) -> int:
    """An integer key's value; `default` when it is absent or wrong (a wrong type is reported by its schema)."""
    value = item.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        return default
    if value < minimum:
        checker.add(item.line_of(key), f"{where}.{key}", f"must be at least {minimum}, got {value}")
        return default
    if most is not None and value > most:
        checker.add(item.line_of(key), f"{where}.{key}", f"must be at most {most:,}, got {value:,}")
        return default
    return value


def _item_lines(value: Any, key: str) -> dict[str, int]:
    """Lines of a list's items as `key[i]`, so a bad queue name points at its own line."""
    return {f"{key}[{i}]": line for i, line in enumerate(value.item_lines)} if isinstance(value, LineList) else {}


def _as_list(value: Any) -> list[Any]:
    """A list as is; one value (a queue name, a URL) as a list of one; nothing as an empty list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
