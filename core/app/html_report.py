"""--report-html PATH: the run as one self-contained HTML page (its charts drawn by uPlot, inlined with the data:
no network needed to open it, and its Content-Security-Policy lets nothing leave the file).

uPlot (MIT, core/app/assets/uPlot.LICENSE) was picked for the size of the file it makes: 51 KB of script for
time-series charts that read at a glance, where Chart.js is ~200 KB and plotly ~3.5 MB."""

from __future__ import annotations

import html
import json
import os
import shlex
from pathlib import Path
from typing import Any

from core.base.redact import redact, redact_data
from core.run.report import RunReport

ASSETS = Path(__file__).resolve().parent / "assets"


def render(
    report: RunReport,
    *,
    pipeline_path: str | None,
    history: list[dict[str, Any]] | None = None,
    page: str | Path | None = None,
) -> str:
    """The page of `report`; `history`: the pipeline's earlier runs, newest first (core/app/history.py); `page`:
    where it will be written, for the link to the previous run's page."""
    previous = next((run["report_html"] for run in history or [] if run.get("report_html")), None)
    data = {
        "previous": os.path.relpath(previous, Path(page).resolve().parent) if previous and page else None,
        "report": redact_data(report.to_dict()),
        "summary": redact(report.summary()),
        "replay_command": replay_command(pipeline_path, report.dead_letter_path),
        "history": history or [],
    }
    # Inside <script>, "</" would end it early: written as "<\/", which JSON reads back the same.
    payload = json.dumps(data, ensure_ascii=False, default=str).replace("</", "<\\/")
    page = (ASSETS / "report.html").read_text(encoding="utf-8")
    for key, value in (
        ("__TITLE__", html.escape(f"{report.pipeline}: {report.finish_reason}")),
        ("__UPLOT_CSS__", (ASSETS / "uPlot.min.css").read_text(encoding="utf-8")),
        ("__UPLOT_JS__", (ASSETS / "uPlot.iife.min.js").read_text(encoding="utf-8")),
        ("__DATA__", payload),
    ):
        page = page.replace(key, value, 1)
    return page


def replay_command(pipeline_path: str | None, dead_letter_path: str | None) -> str:
    """The command that runs the dead letters again, each into the group that dead-lettered it."""
    pipeline = shlex.quote(pipeline_path or "PIPELINE.yaml")
    letters = shlex.quote(dead_letter_path or "DEAD_LETTERS.jsonl")
    return f"python main.py --pipeline {pipeline} --replay {letters}"


def write(path: str | Path, page: str) -> None:
    """Write the page whole or not at all: a temporary file beside it, then renamed over it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # opened as any file: the umask applies
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
