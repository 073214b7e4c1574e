"""Run the pipeline file named by --pipeline or PIPELINE_LOCATION, and exit with an honest code."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from dotenv import load_dotenv
from rich.console import Console

from core.config import ConfigError
from core.database import PROJECT_DIR, data_dir
from core.graph import mermaid
from core.logs import setup_logging
from core.redact import redact
from core.report import EXIT_CONFIG, EXIT_LOCKED
from core.runlock import RunLock
from core.status import StatusReporter
from yaml_reader import YamlPipelineExecutor

logger = logging.getLogger("main")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipeline", metavar="PATH", help="pipeline file (default: $PIPELINE_LOCATION)")
    parser.add_argument("--check", action="store_true", help="only validate the pipeline file; exit 0 or 2")
    parser.add_argument("--graph", action="store_true", help="print the pipeline as a Mermaid flowchart and exit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="override a value, e.g. workers.YahooFinanceWorker.instances=16 (repeatable)")
    parser.add_argument("--stats-json", metavar="PATH", help="write the final counts and finish reason here")
    parser.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="after SIGINT/SIGTERM, exit at the latest this long after (default 10)")
    parser.add_argument("--quiet", action="store_true", help="no live status table or status lines")
    parser.add_argument("--status-interval", type=float, default=10.0, metavar="SECONDS",
                        help="without a terminal, log a status line this often (default 10)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO, or $LOG_LEVEL")
    parser.add_argument("--log-file", metavar="PATH", help="also write the log to this file")
    return parser


def pipeline_path(location: str) -> Path:
    """A relative location is tried from the working directory, then from the project folder (cron)."""
    path = Path(location).expanduser()
    if not path.is_absolute() and not path.exists() and (PROJECT_DIR / path).exists():
        return PROJECT_DIR / path
    return path


def main(argv: list[str] | None = None) -> int:
    """Validate, then show, check or run one pipeline; return the exit code."""
    args = build_parser().parse_args(argv)
    load_dotenv(os.environ.get("ENV_FILE") or PROJECT_DIR / ".env.local", override=False)  # real env wins
    live = not (args.quiet or args.check or args.graph) and sys.stdout.isatty() and sys.stderr.isatty()
    console = Console(stderr=True) if live else None
    setup_logging(args.log_level, log_file=args.log_file, console=console)
    location = args.pipeline or os.environ.get("PIPELINE_LOCATION")
    if not location:
        logger.error("no pipeline: set PIPELINE_LOCATION (environment or .env.local) or pass --pipeline")
        return EXIT_CONFIG
    try:
        executor = YamlPipelineExecutor(pipeline_path(location), sets=args.sets)
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(str(problem)), file=sys.stderr)
        logger.error("%d problem(s) in the pipeline file; nothing was run", len(exc.problems))
        return EXIT_CONFIG
    if args.check:
        print(f"{executor.spec.path}: OK, {len(executor.spec.queues)} queues, {len(executor.spec.workers)} worker groups")
        return 0
    if args.graph:
        print(mermaid(executor.spec), end="")
        return 0
    return run_locked(executor, args, console)


def run_locked(executor: YamlPipelineExecutor, args: argparse.Namespace, console: Console | None) -> int:
    """Run unless another run of the same file holds the lock; report; return the exit code."""
    lock = RunLock(data_dir() / "locks", executor.spec.path)
    if not lock.acquire():
        logger.error("another run of %s is in progress (pid %s, lock %s); not starting a second one",
                     executor.spec.path, lock.holder(), lock.path)
        return EXIT_LOCKED
    status = None if args.quiet else StatusReporter(executor.snapshot, console=console,
                                                    interval_s=1.0 if console else args.status_interval)
    try:
        run(executor, args.shutdown_timeout, status)
    finally:
        lock.release()
    report = executor.report
    if args.stats_json:
        Path(args.stats_json).write_text(redact(json.dumps(report.to_dict(), indent=2)) + "\n", encoding="utf-8")
    logger.info("run report:\n%s", report.table())
    logger.info("%s", report.summary())
    print(redact(report.summary()))
    return report.exit_code


def run(executor: YamlPipelineExecutor, shutdown_timeout_s: float, status: StatusReporter | None) -> None:
    """Start the executor and wait for it; signals ask it to stop, a second signal exits at once."""
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)  # only a flag: the loop below acts on it

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    executor.start()
    if status is not None:
        status.start()
    deadline = None
    while executor.is_alive():
        executor.join(0.1)
        if received and deadline is None:
            executor.request_stop(received[0])
            deadline = time.monotonic() + shutdown_timeout_s
        if len(received) > 1:
            force_exit(executor, 128 + received[-1], "a second signal")
        if deadline is not None and executor.is_alive() and time.monotonic() > deadline:
            logger.error("still running %.1fs after the stop request. Thread stacks:\n%s",
                         shutdown_timeout_s, thread_stacks())
            force_exit(executor, 128 + received[0], f"--shutdown-timeout {shutdown_timeout_s:g}s")
    if status is not None:
        status.stop()


def force_exit(executor: YamlPipelineExecutor, code: int, why: str) -> None:
    """Exit now, without waiting for any thread; what is in hand or queued goes to the dead letters first."""
    abandoned = executor.abandon()
    logger.error("exiting at once (%s): %d item(s) in hand or queued written to %s", why, abandoned,
                 executor.dead_letters.path)
    logging.shutdown()
    os._exit(code)


def thread_stacks() -> str:
    """Where every thread is now, for the log of a run that would not stop."""
    frames = sys._current_frames()
    return "\n".join(f"--- {thread.name}\n" + "".join(traceback.format_stack(frames[thread.ident]))
                     for thread in threading.enumerate() if thread.ident in frames)


if __name__ == "__main__":
    sys.exit(main())
