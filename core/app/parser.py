"""The command line's flags (`python main.py --help`): their names, defaults and help texts, in one place."""

from __future__ import annotations

import argparse

EPILOG = """\
exit codes:
  0    every item stored (or done), nothing lost
  1    items failed (see the dead-letter file named in the summary), were lost, or the run could not start
  2    configuration error: the pipeline file or a setting is wrong; nothing was run
  75   another run of the same pipeline file is still going (cron overlap); nothing was done
  130  stopped by SIGINT; what it did not finish is dead-lettered
  143  stopped by SIGTERM; likewise

environment: (also read from .env.local; the real environment wins)
  PIPELINE_LOCATION   the pipeline file, when --pipeline is not given
  DATABASE_URL        where the sink stores (else POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_HOST,
                      POSTGRES_PORT, POSTGRES_DB; else an SQLite file in DATA_DIR)
  REDIS_URL           the Redis of `backend: redis` queues (default redis://127.0.0.1:6379/0)
  RUN_ID              the run that processes with the same id form (as --run-id)
  DATA_DIR            dead letters, locks, the run history, the SQLite database (default data/ beside main.py)
  DEAD_LETTER_PATH    the dead-letter file (default DATA_DIR/dead_letters/PIPELINE-TIME.jsonl)
  LOG_LEVEL           as --log-level
  ENV_FILE            another file to read instead of .env.local

docs/COMMAND_LINE.md has every flag, variable and exit code."""


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Run the pipeline file named by --pipeline or PIPELINE_LOCATION, and exit with an honest code.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pipeline", metavar="PATH", help="pipeline file (default: $PIPELINE_LOCATION)")
    parser.add_argument("--check", action="store_true", help="only validate the pipeline file; exit 0 or 2")
    parser.add_argument("--graph", action="store_true", help="print the pipeline as a Mermaid flowchart and exit")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="sets",
        help="override a value, e.g. workers.YahooFinanceWorker.instances=16 (repeatable)",
    )
    parser.add_argument(
        "--replay",
        metavar="FILE.jsonl",
        help="run the items of a dead-letter file again, each into the group that dead-lettered it",
    )
    parser.add_argument(
        "--run-id",
        metavar="ID",
        help="with Redis queues: the processes started with the same id form one run (or $RUN_ID)",
    )
    parser.add_argument(
        "--only", metavar="GROUP[,GROUP...]", help="with Redis queues: run only these worker groups in this process"
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="with Redis queues: print the whole run's report here (the sink's process does anyway)",
    )
    parser.add_argument(
        "--record-http",
        metavar="DIR",
        help="record every HTTP answer the run's workers get into cassettes in DIR (secrets left out)",
    )
    parser.add_argument(
        "--offline",
        metavar="DIR",
        help="answer every HTTP request from DIR's cassettes, send nothing, store into DIR/PIPELINE.sqlite "
        "(try: --offline demo/)",
    )
    parser.add_argument(
        "--test",
        nargs="*",
        metavar="NAME",
        help="run the pipeline's tests (PIPELINE.tests.yaml beside it), all or those named; exit 0, 1 or 2",
    )
    parser.add_argument("--tests", metavar="PATH", help="with --test: the test file, when not beside the pipeline")
    parser.add_argument(
        "--fix-tests", action="store_true", help="run the tests and write what each got as its expectation"
    )
    parser.add_argument("--junit-xml", metavar="PATH", help="with --test: also write the results as JUnit XML here")
    parser.add_argument("--stats-json", metavar="PATH", help="write the final counts and finish reason here")
    parser.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write the run's metrics in the Prometheus text format here, every --status-interval and at its end",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="with --run-id: show the whole run (its processes, groups, Redis queues) until it ends; read-only",
    )
    parser.add_argument(
        "--once", action="store_true", help="with --status: print it once; exit 1 if the run failed or a process died"
    )
    parser.add_argument(
        "--history",
        nargs="?",
        const=10,
        type=int,
        metavar="N",
        help="print the pipeline's last N runs (default 10), newest first, with a verdict each, and exit",
    )
    parser.add_argument(
        "--report-html",
        metavar="PATH",
        help="write the run as one self-contained HTML page with charts (however the run ends, like --stats-json)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="after SIGINT/SIGTERM, exit at the latest this long after (default 10)",
    )
    parser.add_argument("--quiet", action="store_true", help="no live status table or status lines")
    parser.add_argument(
        "--status-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="without a terminal, log a status line this often (default 10)",
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="DEBUG, INFO (default), WARNING or ERROR, in any case; default $LOG_LEVEL"
    )
    parser.add_argument("--log-file", metavar="PATH", help="also write the log to this file")
    return parser
