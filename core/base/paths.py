"""Where the project and its local files are, and where worker modules are looked for (light to import: main.py
and every worker process need it before anything else)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]  # core/base/paths.py -> the project folder
_added_paths: list[str] = []  # what use_module_search_paths put on sys.path, so the next pipeline replaces it


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where local files go: DATA_DIR, else data/ beside main.py (so cron's working directory does not matter)."""
    return Path(env.get("DATA_DIR") or PROJECT_DIR / "data")


def default_dead_letter_path(pipeline: str, env: Mapping[str, str] = os.environ) -> Path:
    """Where a run's dead letters go: DEAD_LETTER_PATH, else DATA_DIR/dead_letters/<pipeline>-<UTC time>.jsonl."""
    configured = env.get("DEAD_LETTER_PATH")
    if configured:
        return Path(configured)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return data_dir(env) / "dead_letters" / f"{pipeline}-{stamp}.jsonl"


def missing_pipeline_hint(location: str | Path) -> str:
    """For a pipeline file that does not exist: the paths tried (a relative one from the working directory,
    then from the project folder, as main.py does) and the pipeline files there whose names are close."""
    path = Path(location).expanduser()
    tried = {path: "as given"} if path.is_absolute() else {}
    if not tried:
        for folder, label in ((Path.cwd(), "the working directory"), (PROJECT_DIR, "the project folder")):
            tried.setdefault((folder / path).resolve(), label)
    names: set[str] = set()
    for candidate in tried:
        if candidate.parent.is_dir():
            names.update(f.name for f in candidate.parent.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
    import difflib  # only for a file that is missing

    close = difflib.get_close_matches(path.name, sorted(names), n=2, cutoff=0.8)
    hint = "" if path.is_absolute() else "; tried " + ", ".join(f"{p} ({label})" for p, label in tried.items())
    if close:
        hint += "; did you mean " + " or ".join(repr(str(path.with_name(name))) for name in close) + "?"
    return hint


def module_search_paths(pipeline_path: str | Path) -> list[str]:
    """Where worker modules are looked for after sys.path: the pipeline's folder, the working directory, the project."""
    return list(labelled_search_paths(pipeline_path))


def use_module_search_paths(pipeline_path: str | Path) -> list[str]:
    """Append the pipeline's search paths to sys.path once each, dropping those added for another pipeline."""
    # Idempotent, so a worker process started later can call it with the same pipeline and get the same sys.path.
    wanted = module_search_paths(pipeline_path)
    for entry in [e for e in _added_paths if e not in wanted]:
        _added_paths.remove(entry)
        if entry in sys.path:
            sys.path.remove(entry)
    # Appended, not prepended: a file beside the pipeline must not shadow the standard library, an installed
    # package or PYTHONPATH (a stray `queue.py` in the pipeline's folder would break the runner).
    present = {os.path.abspath(entry or os.curdir) for entry in sys.path if isinstance(entry, str)}
    for entry in wanted:
        if entry not in present:
            sys.path.append(entry)
            _added_paths.append(entry)
    importlib.invalidate_caches()  # a module written since a folder was last listed must be found
    return wanted


def labelled_search_paths(pipeline_path: str | Path) -> dict[str, list[str]]:
    """The search folders, each with what it is ("the working directory"); one folder may be several."""
    labelled: dict[str, list[str]] = {}
    for folder, label in (
        (os.path.dirname(os.path.abspath(os.path.expanduser(pipeline_path))), "the pipeline file's folder"),
        (os.getcwd(), "the working directory"),
        (str(PROJECT_DIR), "the project folder"),
    ):
        labelled.setdefault(os.path.abspath(folder), []).append(label)
    return labelled
