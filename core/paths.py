"""Where the project and its local files are (light to import: main.py needs it before anything else)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

PROJECT_DIR = Path(__file__).resolve().parent.parent


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where local files go: DATA_DIR, else data/ beside main.py (so cron's working directory does not matter)."""
    return Path(env.get("DATA_DIR") or PROJECT_DIR / "data")
