"""Resolve each worker group's class from `location` + `class`, and check its `params` against it."""
from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from typing import Any

from core.config import PipelineSpec, WorkerSpec, _Checker, _did_you_mean

_NO_DEFAULT = inspect.Parameter.empty


def check_imports(spec: PipelineSpec, checker: _Checker) -> None:
    """Import every worker class into spec.classes; each failure becomes a problem with its line."""
    from workers.base import Worker

    for worker in spec.workers:
        where = f"workers.{worker.name}"
        try:
            module = importlib.import_module(worker.location)
        except Exception as exc:  # noqa: BLE001 - any error in user code is a config problem here
            checker.add(worker.key_lines.get("location", worker.line), f"{where}.location",
                        f"cannot import module {worker.location!r}: {exc}{_module_hint(worker.location, exc)}")
            continue
        cls = getattr(module, worker.class_name, None)
        class_line = worker.key_lines.get("class", worker.line)
        if cls is None:
            classes = [n for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, Worker)]
            checker.add(class_line, f"{where}.class", f"module {worker.location!r} has no class "
                        f"{worker.class_name!r}{_did_you_mean(worker.class_name, classes)}")
        elif not (inspect.isclass(cls) and issubclass(cls, Worker)):
            checker.add(class_line, f"{where}.class", f"{worker.class_name} is not a subclass of workers.base.Worker")
        else:
            spec.classes[worker.name] = cls
            for key, message in param_problems(cls, worker.params):
                checker.add(_param_line(worker, key), f"{where}.params{'.' + key if key else ''}", message)


def param_problems(cls: type, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(param, message) for each param the class does not take, lacks, or takes as another type."""
    accepted = init_params(cls)
    problems = []
    if accepted is not None:
        for key in params:
            if key not in accepted:
                problems.append((key, f"{cls.__name__} takes no parameter {key!r}{_did_you_mean(key, accepted)}"
                                      f" (it takes: {', '.join(sorted(accepted)) or 'none'})"))
        for key, param in accepted.items():
            if param.default is _NO_DEFAULT and key not in params:
                problems.append((key, f"{cls.__name__} needs parameter {key!r}"))
            elif key in params and not _same_kind(param.default, params[key]):
                problems.append((key, f"must be {type(param.default).__name__}, got {params[key]!r}"))
    return problems


def init_params(cls: type) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters a Worker subclass takes over the MRO, or None if it takes any keyword."""
    from workers.base import Worker

    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if klass is Worker or klass is object:
            return found
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


def _module_hint(location: str, exc: Exception) -> str:
    """Suggest a sibling module when the last part of a dotted location is misspelt."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name != location or "." not in location:
        return ""
    parent, _, leaf = location.rpartition(".")
    try:
        package = importlib.import_module(parent)
    except ImportError:
        return ""
    siblings = [m.name for m in pkgutil.iter_modules(getattr(package, "__path__", []))]
    close = difflib.get_close_matches(leaf, siblings, n=1)
    return f"; did you mean '{parent}.{close[0]}'?" if close else ""
