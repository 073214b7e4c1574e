"""--record-http DIR and --offline DIR, set up for the whole run before any worker starts: the environment says
what the HTTP clients of every process do (core/http/tape.py), and an offline run stores into an SQLite file in
DIR, never into the configured database (recorded answers are not today's: wrong data is never stored there)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from core.http import offline, tape

logger = logging.getLogger("main")

OFFLINE_DATABASE_ENV = "PIPELINE_OFFLINE_DATABASE"  # `--test` gives each test's run a throwaway database
DATABASE_ENVS = ("DATABASE_URL", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB")


def prepare(name: str, *, record: str | None, offline_dir: str | None, run_id: str | None = None) -> str | None:
    """Set up recording or replaying for pipeline `name`; the configuration error, or None when all is well."""
    if record and offline_dir:
        return "--record-http and --offline together: record against the network, or replay offline, not both"
    if record:
        folder = Path(record).expanduser()
        if folder.exists() and not folder.is_dir():
            return f"--record-http {record}: not a folder"
        os.environ[tape.RECORD_ENV] = str(folder.resolve())
        os.environ[tape.NAME_ENV] = name
        os.environ[tape.RECORDING_ENV] = run_id or time.strftime("%Y%m%dT%H%M%S")
        logger.info("recording every HTTP answer into %s (cookies, Authorization and tokens left out)", folder)
        return None
    if not offline_dir:
        return None
    folder = Path(offline_dir).expanduser()
    if not folder.is_dir():
        return f"--offline {offline_dir}: no such folder (record one with --record-http {offline_dir})"
    try:
        player = tape.load(folder, name)
    except tape.CassetteError as exc:
        return f"--offline: {exc}"
    except OSError as exc:
        return f"--offline {offline_dir}: cannot read it ({exc.strerror})"
    database = Path(os.environ.get(OFFLINE_DATABASE_ENV) or folder.resolve() / f"{name}.sqlite")
    for variable in DATABASE_ENVS:
        os.environ.pop(variable, None)
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ[tape.OFFLINE_ENV] = str(folder.resolve())
    os.environ[tape.NAME_ENV] = name
    offline.enter()
    said = f" ({player.note})" if player.note else ""
    logger.info(
        "offline: %d recorded answer(s) from %s%s; nothing is sent; rows go to %s, not the configured database",
        player.count(),
        ", ".join(str(path) for path in player.sources),
        said,
        database,
    )
    return None
