"""Issue 11: the course's own pipeline file, .env.local and worker classes run unchanged, and a course-style
worker keeps the runner's books: every item it takes or puts is counted, and what it loses is reported."""

from __future__ import annotations

import json
import re
import textwrap
import time
import uuid
from pathlib import Path

import course_workers
import fixture_workers
import pytest
import sqlalchemy as sa
from sites import SP500_PAGE, FakeSites

from conftest import ROOT, run_main
from core.app.executor import YamlPipelineExecutor
from workers.wiki_worker import parse_constituents

COURSE_PIPELINE = ROOT / "pipelines" / "wiki_yahoo_scrapper_pipeline.yaml"
WIKI_URL = "https://en.wikipedia.org/wiki/List_of_S%26P_500_companies"
JOIN_TIMEOUT_S = 60.0


@pytest.fixture
def key():
    """A name of its own for this test's sinks and gates, forgotten afterwards."""
    name = f"course-{uuid.uuid4().hex[:8]}"
    yield name
    course_workers.gate(name).set()  # a failed test must not leave a worker waiting for its gate
    fixture_workers.gate(name).set()
    course_workers.forget(name)
    fixture_workers.forget(name)


def start(tmp_path: Path, text: str, **kwargs) -> YamlPipelineExecutor:
    """Write the pipeline file, build the executor and start it."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl", **kwargs)
    executor.start()
    return executor


def finish(executor: YamlPipelineExecutor):
    """Join the executor; every worker thread must have ended too. Returns the report as --stats-json has it."""
    executor.join(JOIN_TIMEOUT_S)
    assert not executor.is_alive(), "the run did not end"
    assert not [g.name for g in executor.groups.values() if g.runner.alive()], "worker groups still running"
    return executor.report.to_dict()


def balanced(stats: dict) -> None:
    """received = processed + dead_lettered for every group, and nothing lost."""
    for name, group in stats["groups"].items():
        assert group["received"] == group["processed"] + group["dead_lettered"], (name, group)
    assert stats["lost"] == 0


def dead_letters(tmp_path: Path) -> list[dict]:
    path = tmp_path / "dl.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- the course's pipeline file and module paths -------------------------------------------------------------


def test_the_course_module_paths_are_the_shipped_classes():
    from workers import (
        PostgresWorker,
        WikiWorker,
        YahooFinanceWorkers,
        postgres_worker,
        wiki_worker,
        yahoo_finance_worker,
    )

    assert WikiWorker.WikiWorkerMasterScheduler is wiki_worker.WikiWorkerMasterScheduler
    assert YahooFinanceWorkers.YahooFinancePriceScheduler is yahoo_finance_worker.YahooFinancePriceScheduler
    assert PostgresWorker.PostgresMasterScheduler is postgres_worker.PostgresMasterScheduler


def test_the_course_file_from_pipeline_location_passes_check_from_any_folder(tmp_path):
    result = run_main(
        ["--check"], cwd=tmp_path, env={"PIPELINE_LOCATION": "pipelines/wiki_yahoo_scrapper_pipeline.yaml"}
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{COURSE_PIPELINE}: OK, 2 queues, 3 worker groups",
        "  WikiWorker: 1 thread",
        "  YahooFinanceWorker: 2 threads",
        "  PostgresWorker: 6 threads",
    ]


def test_a_pipeline_location_that_is_nowhere_lists_the_paths_tried_and_close_names(tmp_path):
    result = run_main(["--check"], cwd=tmp_path, env={"PIPELINE_LOCATION": "pipelines/wiki_yahoo_scrapper.yaml"})

    assert result.returncode == 2
    assert (
        "pipelines/wiki_yahoo_scrapper.yaml:0: file: cannot read pipeline file: No such file or directory; "
        f"tried {tmp_path.resolve()}/pipelines/wiki_yahoo_scrapper.yaml (the working directory), "
        f"{ROOT}/pipelines/wiki_yahoo_scrapper.yaml (the project folder); did you mean "
        "'pipelines/wiki_yahoo_scrapper_pipeline.yaml' or 'pipelines/wiki_yahoo_scraper_pipeline.yaml'?"
    ) in result.stderr.splitlines()


def course_env_file(tmp_path: Path, sites: FakeSites, database: str) -> Path:
    """The course's .env.local (export lines, empty user and password), its pipeline pointed at `sites`."""
    pipeline = tmp_path / "wiki_yahoo_scrapper_pipeline.yaml"
    text = COURSE_PIPELINE.read_text()
    assert WIKI_URL in text
    pipeline.write_text(text.replace(WIKI_URL, sites.wiki_url))
    env_file = tmp_path / ".env.local"
    env_file.write_text(
        f"export PIPELINE_LOCATION={pipeline}\nexport POSTGRES_USER=''\nexport POSTGRES_PASSWORD=''\n"
        f"export POSTGRES_HOST=localhost\nexport POSTGRES_DB={database}\n"
    )
    return env_file


def yahoo_at(sites: FakeSites) -> list[str]:
    """The course's file has no params: point the shipped Yahoo stage's URL params at `sites` from the command line."""
    return [
        f"--set=workers.YahooFinanceWorker.params.chart_url={sites.chart_url}",
        f"--set=workers.YahooFinanceWorker.params.quote_url={sites.quote_url}",
    ]


def test_the_course_file_and_env_file_store_every_symbol(sites, tmp_path, pg_url):
    database = sa.engine.make_url(pg_url).database
    env_file = course_env_file(tmp_path, sites, database)
    stats_path = tmp_path / "stats.json"

    # LOGNAME: the login user psql would use (getpass reads it first); `postgres` is the role CI has.
    result = run_main(
        ["--quiet", "--stats-json", str(stats_path), *yahoo_at(sites)],
        cwd=tmp_path,
        env={"ENV_FILE": str(env_file), "LOGNAME": "postgres", "DATA_DIR": str(tmp_path / "data")},
    )

    assert result.returncode == 0, result.stderr
    assert "storing into postgresql+psycopg2://postgres@localhost/" in result.stderr
    stats = json.loads(stats_path.read_text())
    balanced(stats)
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            stored = [row[0] for row in conn.execute(sa.text("SELECT symbol FROM prices"))]
    finally:
        engine.dispose()
    assert sorted(stored) == sorted(parse_constituents(SP500_PAGE.read_bytes()))


def test_a_hand_made_table_with_duplicates_refuses_the_run_before_anything_is_fetched(sites, tmp_path, pg_url):
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE prices (id serial PRIMARY KEY, symbol text, price double precision, "
                    "extracted_time timestamp)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO prices (symbol, price, extracted_time) VALUES "
                    "('AAPL', 1.5, '2024-09-18 20:00:02'), ('AAPL', 1.6, '2024-09-18 20:00:02')"
                )
            )
    finally:
        engine.dispose()
    env_file = course_env_file(tmp_path, sites, sa.engine.make_url(pg_url).database)

    result = run_main(
        ["--quiet", *yahoo_at(sites)],
        cwd=tmp_path,
        env={"ENV_FILE": str(env_file), "LOGNAME": "postgres", "DATA_DIR": str(tmp_path / "data")},
    )

    assert result.returncode == 1, result.stderr
    assert (
        "PostgresWorker cannot start: table prices holds 1 (symbol, extracted_time) pair(s) more than once"
        in result.stdout
    )
    assert "The run refuses to start: nothing was fetched and the table is unchanged." in result.stdout
    assert sites.requests == []


# --- course-style workers under the executor ------------------------------------------------------------------


def test_course_workers_mixed_with_the_shipped_ones_account_for_every_symbol(sites, tmp_path, key):
    executor = start(
        tmp_path,
        f"""\
        queues:
          - name: Symbols
          - name: Checked
          - name: Prices
        workers:
          - name: WikiWorker
            location: workers.wiki_worker
            class: WikiWorkerMasterScheduler
            input_values: ["{sites.wiki_url}"]
            output_queues: [Symbols]
          - name: CourseRelay
            location: course_workers
            class: CourseRelay
            instances: 2
            input_queue: Symbols
            output_queues: [Checked]
          - name: YahooFinanceWorker
            location: workers.yahoo_finance_worker
            class: YahooFinancePriceScheduler
            instances: 4
            input_queue: Checked
            output_queues: [Prices]
            params: {{chart_url: "{sites.chart_url}", quote_url: "{sites.quote_url}"}}
          - name: CourseSink
            location: course_workers
            class: CoursePriceSink
            instances: 2
            input_queue: Prices
            params: {{key: {key}}}
        """,
    )

    stats = finish(executor)

    symbols = parse_constituents(SP500_PAGE.read_bytes())
    rows = course_workers.collected(key)
    assert sorted(row[0] for row in rows) == sorted(symbols)
    assert all(len(row) == 3 and row[1] > 0 for row in rows)
    balanced(stats)
    assert stats["exit_code"] == 0 and stats["dead_letters"] == 0
    groups = stats["groups"]
    assert (groups["CourseRelay"]["received"], groups["CourseRelay"]["emitted"]) == (len(symbols), len(symbols))
    assert groups["CourseSink"]["received"] == groups["CourseSink"]["processed"] == len(symbols)


def relay_pipeline(
    key: str,
    relay: str,
    params: str = "",
    sink: str = "Collect",
    *,
    values: str = "[1, 2, 3, 4, 5]",
    gated: bool = False,
    instances: int = 2,
) -> str:
    """fixture Source -> Q -> a course-style relay -> Out -> fixture Collect."""
    return textwrap.dedent(f"""\
        queues:
          - name: Q
          - name: Out
        workers:
          - name: Source
            location: fixture_workers
            class: Source
            input_values: {values}
            output_queues: [Q]
            params: {{gate: "{key if gated else ""}"}}
          - name: Relay
            location: course_workers
            class: {relay}
            instances: {instances}
            input_queue: Q
            output_queues: [Out]
            params: {{{params}}}
          - name: Sink
            location: fixture_workers
            class: {sink}
            input_queue: Out
            params: {{key: {key}}}
        """)


def test_a_course_worker_that_times_out_while_upstream_is_busy_leaves_its_queue_dead_lettered(tmp_path, key):
    executor = start(tmp_path, relay_pipeline(key, "CourseRelay", "timeout_s: 0.2", gated=True))
    deadline = time.monotonic() + 10
    while not executor.groups["Relay"].finished() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert executor.groups["Relay"].finished(), "the course relay did not stop on its own get timeout"
    fixture_workers.gate(key).set()  # only now does the source send anything

    stats = finish(executor)

    balanced(stats)
    assert stats["groups"]["Source"]["emitted"] == 5
    assert stats["groups"]["Relay"]["received"] == stats["groups"]["Relay"]["dead_lettered"] == 5
    assert sorted(letter["item"] for letter in dead_letters(tmp_path)) == [1, 2, 3, 4, 5]
    assert {letter["kind"] for letter in dead_letters(tmp_path)} == {"stopping"}
    assert stats["exit_code"] == 1 and fixture_workers.collected(key) == []


def test_a_course_worker_that_crashes_holding_an_item_is_reported_as_losing_it(tmp_path, key):
    executor = start(tmp_path, relay_pipeline(key, "CourseCrasher", "crash_on: 2", instances=1))

    stats = finish(executor)

    relay = stats["groups"]["Relay"]
    assert (relay["crashed"], relay["in_flight"]) == (1, 1)
    assert relay["received"] == relay["processed"] + relay["dead_lettered"] + 1
    assert stats["lost"] == 1 and stats["exit_code"] == 1
    assert "1 ITEMS UNACCOUNTED FOR" in executor.report.summary()
    assert 2 not in fixture_workers.collected(key)


def test_a_course_source_gets_its_values_once_each_across_instances(tmp_path, key):
    executor = start(
        tmp_path,
        relay_pipeline(key, "CourseLazyRelay", "timeout_s: 5")
        .replace("location: fixture_workers\n    class: Source", "location: course_workers\n    class: CourseSource")
        .replace('params: {gate: ""}', "instances: 2"),
    )

    stats = finish(executor)

    assert sorted(fixture_workers.collected(key)) == [1, 2, 3, 4, 5]
    balanced(stats)
    assert stats["groups"]["Source"]["received"] == stats["groups"]["Source"]["processed"] == 5
    assert stats["exit_code"] == 0


def test_a_course_source_that_crashes_leaves_its_values_unaccounted(tmp_path, key):
    executor = start(
        tmp_path,
        relay_pipeline(key, "CourseRelay")
        .replace("location: fixture_workers\n    class: Source", "location: course_workers\n    class: CourseSource")
        .replace('params: {gate: ""}', "params: {crash_on: 4}"),
    )

    stats = finish(executor)

    source = stats["groups"]["Source"]
    assert (source["received"], source["processed"], source["emitted"], source["crashed"]) == (5, 0, 3, 1)
    assert stats["lost"] == 5 and stats["exit_code"] == 1
    assert sorted(fixture_workers.collected(key)) == [1, 2, 3]


def test_done_shows_in_empty_and_a_done_the_worker_puts_is_not_passed_on(tmp_path, key):
    executor = start(tmp_path, relay_pipeline(key, "CourseEmptyPoller"))

    stats = finish(executor)

    assert sorted(fixture_workers.collected(key)) == [1, 2, 3, 4, 5]
    balanced(stats)
    assert stats["groups"]["Relay"]["emitted"] == 5 and stats["exit_code"] == 0


def test_a_stop_ends_a_course_worker_waiting_without_a_timeout(tmp_path, key):
    executor = start(tmp_path, relay_pipeline(key, "CourseHolder", f"key: {key}", values="[1, 2]", instances=1))
    relay = executor.groups["Relay"]
    deadline = time.monotonic() + 10
    while not relay.in_hand() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [delivery.item for delivery in relay.in_hand()] == [1]  # what a forced exit would record

    executor.request_stop()
    course_workers.gate(key).set()  # the item in hand is finished; the next get() says 'DONE'
    stats = finish(executor)

    assert stats["finish_reason"] == "interrupted"
    balanced(stats)
    assert stats["groups"]["Relay"]["processed"] == 1 and len(fixture_workers.collected(key)) == 1


def test_params_reach_a_course_class_and_one_that_refuses_them_is_a_crash(tmp_path, key):
    executor = start(tmp_path, relay_pipeline(key, "CoursePriceSink", "key: x, colour: red"))

    stats = finish(executor)

    assert stats["groups"]["Relay"]["crashed"] == 2
    assert {letter["kind"] for letter in dead_letters(tmp_path)} == {"stopping"}
    balanced(stats)
    assert stats["exit_code"] == 1


# --- --check -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, extra, problem",
    [
        (
            "input_queue: Q",
            "",
            "workers.Relay.params.input_queue: input_queue is what the runner passes to a "
            "course-style worker; it cannot be a param",
        ),
        (
            "",
            "    processes: 2\n",
            "workers.Relay.processes: CourseRelay is a course-style threading.Thread: it runs "
            "as threads in this process; remove processes, or move it to the Worker API",
        ),
        ("kee: x", "", "workers.Relay.params.key: CoursePriceSink needs parameter 'key'"),
    ],
)
def test_check_accepts_course_classes_and_refuses_what_they_cannot_take(tmp_path, params, extra, problem):
    relay = "CoursePriceSink" if "kee" in params else "CourseRelay"
    text = relay_pipeline("k", relay, params).replace("output_queues: [Out]\n", f"output_queues: [Out]\n{extra}")
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))

    result = run_main(["--check", "--pipeline", str(path)], env={"PYTHONPATH": str(ROOT / "tests")})

    assert result.returncode == 2
    assert [line.split(": ", 1)[1] for line in result.stderr.splitlines() if line.startswith(str(path))] == [problem]


def test_the_course_page_before_and_after_examples_give_the_same_outputs(tmp_path, key):
    page = (ROOT / "docs" / "COURSE.md").read_text(encoding="utf-8")
    before, after = re.findall(r"```python\n(.*?)```", page, re.S)
    outputs = []
    for code in (before, after):
        module = f"readme_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{module}.py").write_text(code)
        text = relay_pipeline(key, "UpperScheduler", values='["mmm", "brk.b"]').replace(
            "location: course_workers", f"location: {module}"
        )
        stats = finish(start(tmp_path, text))
        balanced(stats)
        assert stats["exit_code"] == 0
        outputs.append(sorted(fixture_workers.collected(key)))
        fixture_workers.forget(key)

    assert outputs == [["BRK.B", "MMM"], ["BRK.B", "MMM"]]
