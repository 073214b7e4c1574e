"""The command line (`python main.py`): run the pipeline file named by --pipeline or PIPELINE_LOCATION, and
exit with an honest code."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dotenv import load_dotenv

from core.app.logs import SHOWN_ON_STDOUT, parse_log_level, setup_logging
from core.app.outputs import write_outputs
from core.app.parser import build_parser
from core.app.recording import prepare
from core.app.runlock import RunLock
from core.base.paths import PROJECT_DIR, data_dir
from core.base.redact import redact
from core.pipeline.config import ConfigError, SettingsError
from core.run.report import RunReport

if TYPE_CHECKING:  # each imported where it is used, once it is needed: the command line starts fast
    from rich.console import Console

    from core.app.executor import YamlPipelineExecutor
    from core.pipeline.replay import Replay

logger = logging.getLogger("main")


class Watcher(Protocol):
    """A thread that shows or writes the run while it goes (the live status, the metrics file)."""

    def start(self) -> None: ...

    def stop(self, timeout_s: float = ...) -> None: ...


STATUS_STOP_S = 1.0  # a forced exit waits this long at most for the live table to be taken down


def pipeline_path(location: str) -> Path:
    """A relative location is tried from the working directory, then from the project folder (cron)."""
    path = Path(location).expanduser()
    if not path.is_absolute() and not path.exists() and (PROJECT_DIR / path).exists():
        return PROJECT_DIR / path
    return path


def main(argv: list[str] | None = None) -> int:
    """Validate, then show, check or run one pipeline; return the exit code. Whatever happens, the
    summary is printed and --stats-json written, with a finish_reason that says how the run ended."""
    args = build_parser().parse_args(argv)
    load_dotenv(os.environ.get("ENV_FILE") or PROJECT_DIR / ".env.local", override=False)  # real env wins
    live = not (args.quiet or args.check or args.graph) and sys.stdout.isatty() and sys.stderr.isatty()
    console = _console() if live else None
    try:
        level = parse_log_level(args.log_level or os.environ.get("LOG_LEVEL") or "INFO")
    except SettingsError as exc:
        setup_logging("INFO", log_file=args.log_file)
        logger.error("%s", exc)
        return finish(args, not_run("?", "config-error", str(exc)))
    setup_logging(level, log_file=args.log_file, console=console)
    location = args.pipeline or os.environ.get("PIPELINE_LOCATION")
    if not location:
        why = "no pipeline: set PIPELINE_LOCATION (environment or .env.local) or pass --pipeline"
        logger.error("%s", why)
        return finish(args, not_run("?", "config-error", why))
    path = pipeline_path(location)
    if args.history is not None:
        from core.app import history

        print(history.table(history.last_runs(path.stem, args.history)))
        return 0
    if args.status:
        from core.app.run_status import status_command

        return status_command(path, args)
    if args.test is not None or args.fix_tests:
        from core.app.pipeline_tests.command import run_tests

        return run_tests(path, args)
    from core.app.executor import YamlPipelineExecutor  # imported once the command line is sound: it pulls in a lot

    try:
        replay = _read_replay(args.replay)
        only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
        executor = YamlPipelineExecutor(
            path, sets=args.sets, replay=replay, run_id=args.run_id, only=only, report=args.report
        )
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(str(problem)), file=sys.stderr)
        logger.error("%d problem(s) in the pipeline file; nothing was run", len(exc.problems))
        first = str(exc.problems[0]) + (f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else "")
        return finish(args, not_run(path.stem, "config-error", first, _input_values_in(path)))
    http_problem = prepare(executor.spec.name, record=args.record_http, offline_dir=args.offline, run_id=args.run_id)
    if http_problem:
        logger.error("%s", redact(http_problem))
        return finish(args, not_run(executor.spec.name, "config-error", http_problem))
    if args.check:
        from core.api.kinds import describe_mode

        spec = executor.spec
        print(f"{spec.path}: OK, {len(spec.queues)} queues, {len(spec.workers)} worker groups")
        for worker in spec.workers:
            print(f"  {worker.name}: {describe_mode(worker, spec.classes[worker.name])}")
        return 0
    if args.graph:
        from core.pipeline.graph import mermaid

        print(mermaid(executor.spec), end="")
        return 0
    return run_locked(executor, args, console)


def run_locked(executor: YamlPipelineExecutor, args: argparse.Namespace, console: Console | None) -> int:
    """Run unless another run of the same file holds the lock; report; return the exit code."""
    lock = RunLock(data_dir() / "locks", executor.spec.path)
    # Processes given the same run id join one run on purpose (that is how a run spans machines): no lock.
    joining = executor.distributed is not None and (args.run_id or os.environ.get("RUN_ID"))
    if not joining and not lock.acquire():
        why = f"another run of {executor.spec.path} is in progress (pid {lock.holder()}, lock {lock.path})"
        logger.error("%s; not starting a second one", why)
        values = sum(len(worker.input_values or ()) for worker in executor.spec.workers)
        return finish(args, not_run(executor.spec.name, "locked", why, values))
    watchers: list[Watcher] = []  # threads that show or write the run while it goes
    if not args.quiet:
        from core.app.status import StatusReporter

        interval_s = 1.0 if console else args.status_interval
        watchers.append(StatusReporter(executor.snapshot, console=console, interval_s=interval_s))
    if args.metrics_file:
        from core.app.metrics import MetricsWriter

        watchers.append(
            MetricsWriter(args.metrics_file, executor.spec.name, executor.snapshot, interval_s=args.status_interval)
        )
    try:
        run(executor, args, watchers)
    finally:
        lock.release()
    if executor.report is None:  # the executor itself failed (logged as an uncaught error): still say so
        return finish(
            args,
            not_run(
                executor.spec.name,
                "failed",
                "the run ended without a report: the runner failed while it finished (see the log)",
            ),
        )
    return finish(args, executor.report)


def run(executor: YamlPipelineExecutor, args: argparse.Namespace, watchers: list[Watcher]) -> None:
    """Start the executor and wait for it; signals ask it to stop, a second signal exits at once."""
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)  # only a flag: the loop below acts on it

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    executor.start()
    for watcher in watchers:
        watcher.start()
    deadline = None
    shutdown_timeout_s = args.shutdown_timeout
    while executor.is_alive():
        executor.join(0.1)
        if received and deadline is None:
            executor.request_stop(received[0])
            deadline = time.monotonic() + shutdown_timeout_s
        if len(received) > 1:
            force_exit(executor, args, received[-1], "a second signal", watchers)
        if deadline is not None and executor.is_alive() and time.monotonic() > deadline:
            logger.error(
                "still running %.1fs after the stop request. Thread stacks:\n%s", shutdown_timeout_s, thread_stacks()
            )
            force_exit(executor, args, received[0], f"--shutdown-timeout {shutdown_timeout_s:g}s passed", watchers)
    for watcher in watchers:
        watcher.stop()


def force_exit(
    executor: YamlPipelineExecutor, args: argparse.Namespace, signum: int, why: str, watchers: list[Watcher]
) -> None:
    """Exit now, without waiting for any worker; what is in hand or queued goes to the dead letters first,
    then the summary and --stats-json say so (finish_reason: forced). The live table goes first: its thread
    would draw it again below the summary."""
    for watcher in watchers:
        watcher.stop(STATUS_STOP_S)
    abandoned = executor.abandon()
    logger.error(
        "exiting at once (%s): %d item(s) in hand or queued written to %s", why, abandoned, executor.dead_letters.path
    )
    code = finish(args, executor.forced_report(f"exited at once: {why}", signum))
    logging.shutdown()
    os._exit(code)


def finish(args: argparse.Namespace, report: RunReport) -> int:
    """Write what was asked for (core/app/outputs.py), log the run report, print the one-line summary; return the
    exit code."""
    write_outputs(args, report)
    summary = redact(report.summary())
    printed = not (args.check or args.graph)  # their stdout is their answer
    if report.groups:  # a run that never started has logged why already
        logger.info("run report:\n%s", report.table())
        # Into the log file and a redirected stderr; not onto the terminal the line is printed on just below.
        on_terminal = printed and sys.stdout.isatty()
        (logger.info if report.exit_code == 0 else logger.error)("%s", summary, extra={SHOWN_ON_STDOUT: on_terminal})
    if printed:
        print(summary, flush=True)
    return report.exit_code


def not_run(pipeline: str, reason: str, error: str, not_started: int | None = None) -> RunReport:
    """The report of a run that never started (config error, lock held)."""
    return RunReport(
        pipeline=pipeline,
        finish_reason=reason,
        duration_s=0.0,
        error=redact(" ".join(error.split())),
        not_started=not_started,
        dead_letter_path=None,
    )


def thread_stacks() -> str:
    """Where every thread is now, for the log of a run that would not stop."""
    frames = sys._current_frames()
    return "\n".join(
        f"--- {thread.name}\n" + "".join(traceback.format_stack(frames[thread.ident]))
        for thread in threading.enumerate()
        if thread.ident in frames
    )


def _read_replay(path: str | None) -> Replay | None:
    if path is None:
        return None
    from core.pipeline.replay import describe, read_replay

    replay = read_replay(path)
    logger.info("replaying %s from %s", describe(replay), path)
    return replay


def _input_values_in(path: Path) -> int | None:
    """How many input values the file's sources list, read leniently (a file that is not YAML as a whole may
    still have a `workers:` section that is: a syntax error among the queues says nothing about the input);
    None if it cannot be read."""
    from core.pipeline.yaml_lines import load_with_lines

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return None
    sections = re.split(r"^(?=[A-Za-z_][\w-]*:)", text, flags=re.MULTILINE)  # the top-level keys, one by one
    for candidate in (text, next((part for part in sections if part.startswith("workers:")), "")):
        try:
            raw = load_with_lines(candidate)
            return sum(
                len(worker["input_values"]) if isinstance(worker.get("input_values"), list) else 1
                for worker in raw["workers"]
                if isinstance(worker, dict) and worker.get("input_values") is not None
            )
        except Exception:  # noqa: BLE001 - a file too broken to read says nothing about its input
            continue
    return None


def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True)
