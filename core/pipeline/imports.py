"""Resolve each worker group's class from `location` + `class`, and check its `params` against it."""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import sys
import threading
from pathlib import Path
from typing import Any

from core.api.kinds import RUNNER_KWARGS, is_course_class
from core.api.worker import Worker
from core.base.paths import labelled_search_paths, use_module_search_paths
from core.pipeline.problems import Checker, did_you_mean
from core.pipeline.specs import WorkerSpec

_NO_DEFAULT = inspect.Parameter.empty


def preload_modules(cls: type) -> tuple[str, ...]:
    """The modules a worker class lists in `preload` (one name alone counts as one); () for anything else,
    which the import check reports."""
    names = getattr(cls, "preload", ())
    if isinstance(names, str):
        return (names,)
    if isinstance(names, (tuple, list)) and all(isinstance(name, str) for name in names):
        return tuple(names)
    return ()


def preload(modules: list[str]) -> threading.Thread | None:
    """Import `modules`, in order, in a daemon thread named "preload" (the thread, or None when there are none).

    Workers list in their `preload` what their setup() will import; importing it while the run is still
    opening its groups overlaps the parts of an import that wait (reading files, loading certificates) with
    other work: 22 ms less at 256 requests in flight. A failure is left for the worker's own import to report.
    """
    if not modules:
        return None

    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001,S112 - reported where the worker imports it
                continue

    thread = threading.Thread(target=run, name="preload", daemon=True)
    thread.start()
    return thread


def check_imports(workers: list[WorkerSpec], checker: Checker, *, pipeline_path: str | Path) -> dict[str, type]:
    """Import each worker's class (looking beside the pipeline too) and check its params; the classes by group."""
    use_module_search_paths(pipeline_path)
    classes: dict[str, type] = {}
    for worker in workers:
        where = f"workers.{worker.name}"
        try:
            module = importlib.import_module(worker.location)
        except Exception as exc:  # noqa: BLE001 - any error in user code is a config problem here
            checker.add(
                worker.key_lines.get("location", worker.line),
                f"{where}.location",
                f"cannot import module {worker.location!r}: {exc}"
                f"{_not_found_hint(worker.location, exc, pipeline_path)}",
            )
            continue
        cls = getattr(module, worker.class_name, None)
        class_line = worker.key_lines.get("class", worker.line)
        if cls is None:
            names = [
                n
                for n, v in vars(module).items()
                if inspect.isclass(v) and (issubclass(v, Worker) or is_course_class(v))
            ]
            checker.add(
                class_line,
                f"{where}.class",
                f"module {worker.location!r} has no class "
                f"{worker.class_name!r}{did_you_mean(worker.class_name, names)}",
            )
        elif is_course_class(cls):  # a threading.Thread written the course's way: core.modes.course runs it
            classes[worker.name] = cls
            for key, message in course_problems(cls, worker):
                if key == "processes":
                    checker.add(worker.key_lines.get(key, worker.line), f"{where}.{key}", message)
                else:
                    checker.add(_param_line(worker, key), f"{where}.params.{key}", message)
        elif not (inspect.isclass(cls) and issubclass(cls, Worker)):
            checker.add(class_line, f"{where}.class", f"{worker.class_name} is not a subclass of workers.base.Worker")
        else:
            classes[worker.name] = cls
            listed = getattr(cls, "preload", ())
            if not preload_modules(cls) and listed not in ((), []):
                checker.add(
                    class_line,
                    f"{where}.class",
                    f"{cls.__name__}.preload must name modules to import (a tuple of str), not {listed!r}",
                )
            generic = param_problems(cls, worker.params)
            # The class's own check sees only the params the generic one passed, so it may rely on their types.
            passed = {key: value for key, value in worker.params.items() if key not in {k for k, _ in generic}}
            for key, message in generic + own_param_problems(cls, passed):
                checker.add(_param_line(worker, key), f"{where}.params{'.' + key if key else ''}", message)
    return classes


def param_problems(cls: type, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(param, message) for each param the class does not take, lacks, or takes as another type."""
    accepted = init_params(cls)
    problems = []
    if accepted is not None:
        for key in params:
            if key not in accepted:
                problems.append(
                    (
                        key,
                        f"{cls.__name__} takes no parameter {key!r}{did_you_mean(key, accepted)}"
                        f" (it takes: {', '.join(sorted(accepted)) or 'none'})",
                    )
                )
        for key, param in accepted.items():
            if param.default is _NO_DEFAULT and key not in params:
                problems.append((key, f"{cls.__name__} needs parameter {key!r}"))
            elif key in params and not _same_kind(param.default, params[key]):
                problems.append((key, f"must be {type(param.default).__name__}, got {params[key]!r}"))
    return problems


def course_problems(cls: type, worker: WorkerSpec) -> list[tuple[str, str]]:
    """(key, message) for what a course-style class cannot be given: `processes`, a param the runner passes
    itself, a param its __init__ does not take (when it takes no **kwargs), lacks, or takes as another type."""
    problems = []
    if worker.processes:
        problems.append(
            (
                "processes",
                f"{cls.__name__} is a course-style threading.Thread: it runs as threads in "
                "this process; remove processes, or move it to the Worker API",
            )
        )
    accepted: dict[str, inspect.Parameter] = {}
    open_ended = False
    for klass in cls.__mro__:
        if klass is threading.Thread or klass is object:
            break
        init = vars(klass).get("__init__")
        if init is None:
            continue
        for param in list(inspect.signature(init).parameters.values())[1:]:
            if param.kind is param.VAR_KEYWORD:
                open_ended = True  # it may pop any name from **kwargs: unknown names cannot be refused
            elif param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                accepted.setdefault(param.name, param)
    for key in worker.params:
        if key in RUNNER_KWARGS:
            problems.append((key, f"{key} is what the runner passes to a course-style worker; it cannot be a param"))
        elif key not in accepted and not open_ended:
            problems.append((key, f"{cls.__name__} takes no parameter {key!r}{did_you_mean(key, accepted)}"))
        elif key in accepted and not _same_kind(accepted[key].default, worker.params[key]):
            problems.append((key, f"must be {type(accepted[key].default).__name__}, got {worker.params[key]!r}"))
    for key, param in accepted.items():
        if param.default is _NO_DEFAULT and key not in RUNNER_KWARGS and key not in worker.params:
            problems.append((key, f"{cls.__name__} needs parameter {key!r}"))
    return problems


def own_param_problems(cls: type, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(param, message) from the class's own `check_params(params)`, for what it knows before the run."""
    check = getattr(cls, "check_params", None)
    if check is None:
        return []
    try:
        return [(str(key), str(message)) for key, message in check(dict(params))]
    except Exception as exc:  # noqa: BLE001 - a failing check in user code is reported, not a crash of --check
        return [("", f"{cls.__name__}.check_params failed: {type(exc).__name__}: {exc}")]


def init_params(cls: type) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters a Worker subclass takes over the MRO, or None if it takes any keyword."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass is Worker or klass is object:
            return found  # what Worker itself takes is the runner's to pass, not the file's
        init = vars(klass).get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        for param in params:
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                found.setdefault(param.name, param)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return found
    return None


def _same_kind(default: Any, value: Any) -> bool:
    """A value fits a default of a simple type; an int is fine where a float is expected."""
    if default is _NO_DEFAULT or default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) == isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (int, str)):
        return isinstance(value, type(default))
    return True


def _param_line(worker: WorkerSpec, key: str) -> int:
    line_of = getattr(worker.params, "line_of", None)
    return line_of(key) if line_of and key in worker.params else worker.key_lines.get("params", worker.line)


def _not_found_hint(location: str, exc: Exception, pipeline_path: str | Path) -> str:
    """Where a module that does not exist was looked for, and a sibling whose name is close."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if not missing or not (location == missing or location.startswith(missing + ".")):
        return ""  # the module exists; something it imports does not, and the message names that
    if "." not in missing:
        labelled = labelled_search_paths(pipeline_path)
        folders = [f"{folder} ({', '.join(labels)})" for folder, labels in labelled.items()]
        return f"; looked on PYTHONPATH, in the installed packages and in {', '.join(folders)}"
    parent, _, leaf = missing.rpartition(".")
    package_path = list(getattr(sys.modules.get(parent), "__path__", []))
    siblings = [m.name for m in pkgutil.iter_modules(package_path)]
    close = difflib.get_close_matches(leaf, siblings, n=1)
    return (f"; looked in {', '.join(package_path)}" if package_path else "") + (
        f"; did you mean '{parent}.{close[0]}'?" if close else ""
    )
