"""The `queues:` and `workers:` entries of a pipeline file read into specs: each key's type, the required
keys, the limits on instances and processes, and duplicate names, every problem with its line."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from core.pipeline.problems import Checker, did_you_mean, kind_of
from core.pipeline.specs import DEFAULT_MAXSIZE, QUEUE_BACKENDS, PipelineSpec, QueueSpec, WorkerSpec
from core.pipeline.values import generated_values
from core.pipeline.yaml_lines import LineDict, LineList

TOP_KEYS = ("queues", "workers")
QUEUE_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "maxsize": int,
    "backend": str,
    "visibility_timeout_s": float,
    "max_deliveries": int,
}
WORKER_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "note": str,
    "location": str,
    "class": str,
    "instances": int,
    "processes": int,
    "input_queue": str,
    "output_queues": list,
    "input_values": (list, dict),  # the values, or {range: [...]} / {file: PATH} (core/pipeline/values.py)
    "params": dict,
}
REQUIRED = {"queue": ("name",), "worker": ("name", "location", "class")}
# The keys the wiring and the import checks read. A check runs on a worker entry only when these keys have no
# problem of their own, so a broken entry is reported once, not again as the echoes of its problem.
WIRING_KEYS = ("name", "input_queue", "output_queues", "input_values")
IMPORT_KEYS = ("location", "class", "params")
# A group's instances are built before anything runs (--check too), each a thread or an asyncio task, and each
# of its processes is started: past these, a slip such as `instances: 100000000` would take all the memory of
# the machine instead of being named. Real groups stay far below (docs/MODES.md's largest use 128 tasks).
MAX_INSTANCES = 10_000  # in all of a group's processes together
MAX_PROCESSES = 256


def build_specs(raw: LineDict, checker: Checker) -> tuple[PipelineSpec, dict[str, str], set[str]]:
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
    given = values is not None  # a range or file that could not be read is given, and said so already
    if isinstance(values, dict):
        values = generated_values(values, item.line_of("input_values"), f"{where}.input_values", checker)
    values = None if values is None else values if isinstance(values, list) else _as_list(values)
    if given == (item.get("input_queue") is not None):
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
