"""The pipeline file: its schema, and the checks that run before any thread starts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import yaml

from core.base.paths import missing_pipeline_hint
from core.pipeline.entries import IMPORT_KEYS, TOP_KEYS, WIRING_KEYS, build_specs
from core.pipeline.imports import check_imports
from core.pipeline.overrides import apply_sets, expand_env
from core.pipeline.problems import Checker, ConfigError, Problem, SettingsError, kind_of
from core.pipeline.specs import PipelineSpec, QueueSpec, WorkerSpec
from core.pipeline.wiring import check_wiring
from core.pipeline.yaml_limits import LoadLimitError
from core.pipeline.yaml_lines import LineDict, LineList, load_with_lines

__all__ = ["ConfigError", "PipelineSpec", "Problem", "QueueSpec", "SettingsError", "WorkerSpec", "load_pipeline"]


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
        spec, entry_of, complete = build_specs(raw, checker)
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
