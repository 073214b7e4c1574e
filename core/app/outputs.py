"""What a run leaves behind once it has ended, however it ended: --stats-json, --report-html, --metrics-file and its
line in the run history. None of them can change the run's exit code: one that cannot be written is logged."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import time
from pathlib import Path

from core.app import history
from core.base.redact import redact_data
from core.run.report import RunReport

logger = logging.getLogger("main")

HISTORY_IN_REPORT = 30  # the last runs the HTML report charts


def write_outputs(args: argparse.Namespace, report: RunReport) -> None:
    """Write each output asked for, and record the run (not for --check or --graph, which run nothing)."""
    if args.stats_json:
        try:
            Path(args.stats_json).write_text(
                json.dumps(redact_data(report.to_dict()), indent=2) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            logger.error("cannot write --stats-json %s: %s", args.stats_json, exc)
    # Not --check or --graph, which run nothing; not a config error, which must leave no file behind.
    keeps_history = not (args.check or args.graph) and report.finish_reason != "config-error"
    if args.report_html:
        from core.app.html_report import render, write

        try:
            earlier = _last_runs(report.pipeline) if keeps_history else []
            location = args.pipeline or os.environ.get("PIPELINE_LOCATION")
            write(args.report_html, render(report, pipeline_path=location, history=earlier, page=args.report_html))
        except OSError as exc:
            logger.error("cannot write --report-html %s: %s", args.report_html, exc)
    if keeps_history:
        _record(report, args.report_html)
    if getattr(args, "metrics_file", None):
        from core.app import metrics

        last_success = time.time() if report.exit_code == 0 else _last_success(report.pipeline)
        try:
            metrics.write(args.metrics_file, metrics.at_end(report, last_success))
        except OSError as exc:
            logger.error("cannot write --metrics-file %s: %s", args.metrics_file, exc)


def _last_runs(pipeline: str, count: int = HISTORY_IN_REPORT) -> list[dict]:
    try:
        return history.last_runs(pipeline, count)
    except (OSError, sqlite3.Error) as exc:
        logger.warning("cannot read the run history %s: %s", history.history_path(), exc)
        return []


def _last_success(pipeline: str) -> float | None:
    """When a run of the pipeline last ended with exit 0, from the history (Unix time)."""
    from datetime import datetime

    try:
        ended = history.last_success(pipeline)
    except (OSError, sqlite3.Error) as exc:
        logger.warning("cannot read the run history %s: %s", history.history_path(), exc)
        return None
    return datetime.fromisoformat(ended).timestamp() if ended else None


def _record(report: RunReport, report_html: str | None) -> None:
    """Add the run to the history; a history that cannot be written is said, and the run's exit stays its own."""
    try:
        history.record(report, report_html=str(Path(report_html).resolve()) if report_html else None)
    except (OSError, sqlite3.Error) as exc:
        logger.warning("cannot record the run in the history %s: %s", history.history_path(), exc)
