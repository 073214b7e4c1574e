"""Where the project and its local files are (light to import: main.py needs it before anything else)."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Mapping

PROJECT_DIR = Path(__file__).resolve().parent.parent


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where local files go: DATA_DIR, else data/ beside main.py (so cron's working directory does not matter)."""
    return Path(env.get("DATA_DIR") or PROJECT_DIR / "data")


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
    close = difflib.get_close_matches(path.name, sorted(names), n=2, cutoff=0.8)
    hint = "" if path.is_absolute() else "; tried " + ", ".join(f"{p} ({label})" for p, label in tried.items())
    if close:
        hint += "; did you mean " + " or ".join(repr(str(path.with_name(name))) for name in close) + "?"
    return hint
