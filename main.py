"""Command line: run the pipeline file named by --pipeline or PIPELINE_LOCATION, exit with an honest code."""
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

from core.config import ConfigError
from core.database import PROJECT_DIR, data_dir
from core.redact import RedactingFormatter, redact
from core.report import EXIT_CONFIG, EXIT_LOCKED
from core.runlock import RunLock
from yaml_reader import YamlPipelineExecutor

logger = logging.getLogger("main")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipeline", metavar="PATH", help="pipeline file (default: $PIPELINE_LOCATION)")
    parser.add_argument("--stats-json", metavar="PATH", help="write the final counts and finish reason here")
    parser.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="after SIGINT/SIGTERM, exit at the latest this long after (default 10)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")
    return parser.parse_args(argv)


def setup_logging(level: str) -> None:
    """Log to stderr through a formatter that masks secrets; uncaught errors go through it too."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    sys.excepthook = lambda kind, exc, tb: logger.critical("uncaught error", exc_info=(kind, exc, tb))
    threading.excepthook = lambda args: logger.critical(
        "uncaught error in thread %s", args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def pipeline_path(location: str) -> Path:
    """A relative location is tried from the working directory, then from the project folder (cron)."""
    path = Path(location).expanduser()
    if not path.is_absolute() and not path.exists() and (PROJECT_DIR / path).exists():
        return PROJECT_DIR / path
    return path


def main(argv: list[str] | None = None) -> int:
    """Run one pipeline and return the exit code."""
    args = parse_args(argv)
    load_dotenv(os.environ.get("ENV_FILE") or PROJECT_DIR / ".env.local", override=False)  # real env wins
    setup_logging(args.log_level)
    location = args.pipeline or os.environ.get("PIPELINE_LOCATION")
    if not location:
        logger.error("no pipeline: set PIPELINE_LOCATION (environment or .env.local) or pass --pipeline")
        return EXIT_CONFIG
    try:
        executor = YamlPipelineExecutor(pipeline_path(location))
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(str(problem)), file=sys.stderr)
        logger.error("%d problem(s) in the pipeline file; nothing was run", len(exc.problems))
        return EXIT_CONFIG
    lock = RunLock(data_dir() / "locks", executor.spec.path)
    if not lock.acquire():
        logger.error("another run of %s is in progress (pid %s, lock %s); not starting a second one",
                     executor.spec.path, lock.holder(), lock.path)
        return EXIT_LOCKED
    try:
        run(executor, args.shutdown_timeout)
    finally:
        lock.release()
    report = executor.report
    if args.stats_json:
        Path(args.stats_json).write_text(redact(json.dumps(report.to_dict(), indent=2)) + "\n", encoding="utf-8")
    logger.info("%s", report.summary())
    print(redact(report.summary()))
    return report.exit_code


def run(executor: YamlPipelineExecutor, shutdown_timeout_s: float) -> None:
    """Start the executor and wait for it; signals ask it to stop, a second signal exits at once."""
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if received:
            os._exit(128 + signum)
        received.append(signum)  # only a flag: the loop below acts on it

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    executor.start()
    deadline = None
    while executor.is_alive():
        executor.join(0.2)
        if received and deadline is None:
            executor.request_stop(received[0])
            deadline = time.monotonic() + shutdown_timeout_s
        if deadline is not None and executor.is_alive() and time.monotonic() > deadline:
            logger.error("still running %.1fs after the stop request; exiting. Thread stacks:\n%s",
                         shutdown_timeout_s, thread_stacks())
            logging.shutdown()
            os._exit(128 + received[0])


def thread_stacks() -> str:
    """Where every thread is now, for the log of a run that would not stop."""
    frames = sys._current_frames()
    return "\n".join(f"--- {thread.name}\n" + "".join(traceback.format_stack(frames[thread.ident]))
                     for thread in threading.enumerate() if thread.ident in frames)


if __name__ == "__main__":
    sys.exit(main())
