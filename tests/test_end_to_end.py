"""The issue's "done when": `python main.py` runs the shipped pipeline against local stand-ins for
Wikipedia and Yahoo and stores one row per S&P 500 symbol, in PostgreSQL or in the SQLite file."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sites import SP500_PAGE, WIKI_PATH, FakeSites, price_for

from conftest import ROOT, local_pipeline, run_main
from workers.postgres_worker import prices_table
from workers.wiki_worker import parse_constituents
from workers.yahoo_pages import yahoo_symbol

SYMBOL_COUNT = 503
MARKET_TIME = datetime(2024, 9, 18, 20, 0, 2)  # the served regularMarketTime, as UTC wall time
CANARY_PASSWORD = "canary-s3cret-pw"
# The shipped file spaces Yahoo requests 0.2 s apart (100 s for 503 symbols); the fake server needs no mercy.
NO_RATE_LIMIT = {"requests_per_second: 5": "requests_per_second: 0"}


@pytest.fixture(scope="module")
def symbols() -> list[str]:
    """Every symbol on the saved page, as Wikipedia writes it."""
    return parse_constituents(SP500_PAGE.read_bytes())


def fast_pipeline(sites: FakeSites, folder: Path, **replace: str) -> Path:
    """The shipped pipeline pointed at `sites`, without the rate limit, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return local_pipeline(sites, folder, **{**NO_RATE_LIMIT, **replace})


def read_rows(url: str) -> list[dict]:
    """Every row of `prices` at `url`, times as datetimes (SQLite keeps them as text)."""
    engine = sa.create_engine(url)
    try:
        table = sa.Table(prices_table().name, sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            return [
                dict(row._mapping)
                for row in conn.execute(
                    sa.select(
                        table.c.symbol,
                        table.c.price,
                        table.c.currency,
                        table.c.market_time,
                        table.c.extracted_time,
                    ).order_by(table.c.id)
                )
            ]
    finally:
        engine.dispose()


def utc_now_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def assert_served_prices(rows: list[dict], symbols: list[str], started: datetime, ended: datetime) -> None:
    """One row per symbol, each holding what the fake Yahoo served for it."""
    assert sorted(row["symbol"] for row in rows) == sorted(symbols)
    for row in rows:
        assert row["price"] == pytest.approx(price_for(yahoo_symbol(row["symbol"]))), row
        assert row["currency"] == "USD", row
        assert row["market_time"] == MARKET_TIME, row
        assert started <= row["extracted_time"] <= ended, row  # UTC wall time, taken during the run


def run_pipeline(sites: FakeSites, tmp_path: Path, env: dict[str, str], name: str = "run"):
    """Run main on the local pipeline; return (result, stats, started, ended)."""
    pipeline = fast_pipeline(sites, tmp_path / name)
    stats_path = tmp_path / f"{name}-stats.json"
    started = utc_now_naive()
    result = run_main(
        ["--pipeline", str(pipeline), "--stats-json", str(stats_path)], env={"DATA_DIR": str(tmp_path / "data"), **env}
    )
    ended = utc_now_naive()
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    return result, stats, started, ended


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_full_run_stats(stats: dict) -> None:
    assert stats["finish_reason"] == "finished"
    assert stats["exit_code"] == 0
    assert stats["lost"] == 0
    assert stats["dead_letters"] == 0
    assert stats["duration_s"] > 0
    groups = stats["groups"]
    assert (groups["WikiWorker"]["received"], groups["WikiWorker"]["emitted"]) == (1, SYMBOL_COUNT)
    assert (groups["YahooFinanceWorker"]["received"], groups["YahooFinanceWorker"]["emitted"]) == (
        SYMBOL_COUNT,
        SYMBOL_COUNT,
    )
    assert groups["PostgresWorker"]["received"] == SYMBOL_COUNT
    assert groups["PostgresWorker"]["stored"] == SYMBOL_COUNT
    for group in groups.values():
        assert group["dead_lettered"] == 0 and group["crashed"] == 0 and group["in_flight"] == 0
    for name in ("SymbolQueue", "PostgresUploading"):
        queue = stats["queues"][name]
        assert (queue["put"], queue["taken"], queue["left"]) == (SYMBOL_COUNT, SYMBOL_COUNT, 0), name


def assert_one_line_summary(stdout: str) -> str:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return lines[0]


def test_page_has_the_symbols_the_issue_names(symbols):
    assert len(symbols) == SYMBOL_COUNT
    assert {"BRK.B", "BF.B", "MMM", "AOS"} <= set(symbols)


def test_run_into_postgresql_stores_one_row_per_symbol(sites, tmp_path, pg_url, symbols):
    result, stats, started, ended = run_pipeline(sites, tmp_path, {"DATABASE_URL": pg_url})

    assert result.returncode == 0, result.stderr
    rows = read_rows(pg_url)
    assert len(rows) == SYMBOL_COUNT
    assert_served_prices(rows, symbols, started, ended)
    brk = next(row for row in rows if row["symbol"] == "BRK.B")
    assert brk["price"] == pytest.approx(price_for("BRK-B"))
    assert brk["price"] != pytest.approx(price_for("BRK.B"))  # the lookup really used Yahoo's dash form
    assert stats is not None
    assert_full_run_stats(stats)
    summary = assert_one_line_summary(result.stdout)
    assert "finished" in summary and "stored 503" in summary and "no dead letters" in summary
    assert summary.endswith("exit 0")


def test_run_with_the_course_postgres_variables(sites, tmp_path, pg_url, symbols):
    url = sa.make_url(pg_url)
    env = {
        "POSTGRES_USER": url.username,
        "POSTGRES_HOST": url.host,
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_DB": url.database,
    }

    result, stats, started, ended = run_pipeline(sites, tmp_path, env)

    assert result.returncode == 0, result.stderr
    assert_served_prices(read_rows(pg_url), symbols, started, ended)
    assert_full_run_stats(stats)


def test_run_without_a_database_writes_the_sqlite_file(sites, tmp_path, symbols):
    result, stats, started, ended = run_pipeline(sites, tmp_path, {})

    assert result.returncode == 0, result.stderr
    sqlite_file = tmp_path / "data" / "prices.sqlite3"
    assert sqlite_file.is_file()
    assert_served_prices(read_rows(f"sqlite:///{sqlite_file}"), symbols, started, ended)
    assert_full_run_stats(stats)


def test_unknown_symbols_are_dead_lettered_once_each_and_fail_the_run(tmp_path, pg_url, symbols):
    unknown = {"MMM", "AOS"}
    with FakeSites(unknown=unknown) as sites:
        result, stats, started, ended = run_pipeline(sites, tmp_path, {"DATABASE_URL": pg_url})
        chart_hits = {symbol: sites.hits[f"/v8/finance/chart/{symbol}"] for symbol in unknown}
        quote_hits = {symbol: sites.hits[f"/quote/{symbol}"] for symbol in unknown}

    assert result.returncode == 1, result.stderr
    rows = read_rows(pg_url)
    assert len(rows) == SYMBOL_COUNT - 2
    assert_served_prices(rows, [s for s in symbols if s not in unknown], started, ended)
    assert chart_hits == {"MMM": 1, "AOS": 1}  # a 404 Not Found is an answer, not a reason to retry
    assert quote_hits == {"MMM": 0, "AOS": 0}

    assert stats["finish_reason"] == "finished" and stats["exit_code"] == 1
    assert stats["dead_letters"] == 2
    yahoo = stats["groups"]["YahooFinanceWorker"]
    assert (yahoo["received"], yahoo["emitted"], yahoo["dead_lettered"]) == (SYMBOL_COUNT, SYMBOL_COUNT - 2, 2)
    assert stats["groups"]["PostgresWorker"]["stored"] == SYMBOL_COUNT - 2
    dead_letter_file = Path(stats["dead_letter_path"])
    letters = [json.loads(line) for line in dead_letter_file.read_text().splitlines()]
    assert sorted(letter["item"] for letter in letters) == sorted(unknown)
    for letter in letters:
        assert letter["group"] == "YahooFinanceWorker"
        assert "Not Found" in letter["error"]
        assert letter["attempts"] == 1
    summary = assert_one_line_summary(result.stdout)
    assert f"2 dead letters in {dead_letter_file}" in summary
    assert summary.endswith("exit 1")


def test_dead_letter_path_from_the_environment(tmp_path, pg_url):
    target = tmp_path / "letters" / "here.jsonl"
    with FakeSites(unknown={"MMM"}) as sites:
        result, stats, _, _ = run_pipeline(sites, tmp_path, {"DATABASE_URL": pg_url, "DEAD_LETTER_PATH": str(target)})

    assert result.returncode == 1, result.stderr
    assert stats["dead_letter_path"] == str(target)
    assert [json.loads(line)["item"] for line in target.read_text().splitlines()] == ["MMM"]


def test_second_run_into_the_same_database_adds_its_own_rows(sites, tmp_path, pg_url, symbols):
    first, _, _, _ = run_pipeline(sites, tmp_path, {"DATABASE_URL": pg_url}, name="first")
    sites.market_time += 86400  # a trading day later: new observations (the same ones would be stored once)
    second, stats, _, _ = run_pipeline(sites, tmp_path, {"DATABASE_URL": pg_url}, name="second")

    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert_full_run_stats(stats)
    rows = read_rows(pg_url)
    assert len(rows) == 2 * SYMBOL_COUNT
    times: dict[str, set[datetime]] = {}
    for row in rows:
        times.setdefault(row["symbol"], set()).add((row["market_time"], row["extracted_time"]))
    assert set(times) == set(symbols)
    assert all(len(stamps) == 2 for stamps in times.values())


def test_unreachable_database_fails_fast_without_fetching_or_printing_the_password(sites, tmp_path):
    url = f"postgresql://postgres:{CANARY_PASSWORD}@127.0.0.1:{free_port()}/prices"

    began = time.monotonic()
    result, stats, _, _ = run_pipeline(sites, tmp_path, {"DATABASE_URL": url})
    elapsed_s = time.monotonic() - began

    assert result.returncode != 0
    assert elapsed_s < 15, f"took {elapsed_s:.1f}s to give up on a closed port"
    assert sites.hits[WIKI_PATH] == 0
    assert sum(sites.hits.values()) == 0
    assert stats is not None and stats["finish_reason"] == "failed"
    assert "PostgresWorker" in stats["error"]
    stats_text = (tmp_path / "run-stats.json").read_text()
    for text in (result.stdout, result.stderr, stats_text):
        assert CANARY_PASSWORD not in text


def test_unencoded_at_sign_in_the_password_is_not_printed(sites, tmp_path):
    tail = "word-" + CANARY_PASSWORD
    url = f"postgresql://postgres:p@ss{tail}@127.0.0.1:{free_port()}/prices"

    result, _, _, _ = run_pipeline(sites, tmp_path, {"DATABASE_URL": url})

    assert result.returncode != 0
    stats_text = (tmp_path / "run-stats.json").read_text() if (tmp_path / "run-stats.json").exists() else ""
    for text in (result.stdout, result.stderr, stats_text):
        assert tail not in text


def write_env_file(path: Path, **values: str) -> Path:
    path.write_text("# a developer's .env.local\n" + "".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def test_env_file_names_the_pipeline(sites, tmp_path):
    pipeline = fast_pipeline(sites, tmp_path / "from_file").rename(tmp_path / "from_file" / "from_env_file.yaml")
    env_file = write_env_file(tmp_path / "env.local", PIPELINE_LOCATION=str(pipeline))
    stats_path = tmp_path / "stats.json"

    result = run_main(
        ["--stats-json", str(stats_path)], env={"ENV_FILE": str(env_file), "DATA_DIR": str(tmp_path / "data")}
    )

    assert result.returncode == 0, result.stderr
    stats = json.loads(stats_path.read_text())
    assert stats["pipeline"] == "from_env_file"
    assert stats["groups"]["PostgresWorker"]["stored"] == SYMBOL_COUNT


def test_real_environment_wins_over_the_env_file(sites, tmp_path):
    from_file = fast_pipeline(sites, tmp_path / "a").rename(tmp_path / "a" / "from_env_file.yaml")
    from_env = fast_pipeline(sites, tmp_path / "b").rename(tmp_path / "b" / "from_environment.yaml")
    env_file = write_env_file(tmp_path / "env.local", PIPELINE_LOCATION=str(from_file))
    stats_path = tmp_path / "stats.json"

    result = run_main(
        ["--stats-json", str(stats_path)],
        env={"ENV_FILE": str(env_file), "PIPELINE_LOCATION": str(from_env), "DATA_DIR": str(tmp_path / "data")},
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(stats_path.read_text())["pipeline"] == "from_environment"


def test_no_pipeline_anywhere_is_a_config_error(tmp_path):
    result = run_main([], env={"DATA_DIR": str(tmp_path)}, timeout_s=30)

    assert result.returncode == 2
    assert "PIPELINE_LOCATION" in result.stderr


@pytest.mark.parametrize(
    "pipeline_file, classes, modes",
    [
        # the one-line switch to asyncio
        (
            "wiki_yahoo_scraper_pipeline.yaml",
            {"YahooFinanceWorker": "YahooFinancePriceAsyncScheduler"},
            {"WikiWorker": "threads", "YahooFinanceWorker": "async"},
        ),
        # every HTTP stage on asyncio: the run never loads requests
        (
            "wiki_yahoo_scraper_pipeline.yaml",
            {"YahooFinanceWorker": "YahooFinancePriceAsyncScheduler", "WikiWorker": "WikiWorkerAsyncScheduler"},
            {"WikiWorker": "async", "YahooFinanceWorker": "async"},
        ),
        # threads, asyncio inside 2 worker processes
        ("modes_example.yaml", {}, {"YahooFinanceWorker": "processes (2 x 32 async)"}),
    ],
)
def test_every_mode_stores_every_symbol(sites, tmp_path, pg_url, symbols, pipeline_file, classes, modes):
    text = (ROOT / "pipelines" / pipeline_file).read_text()
    pipeline = local_pipeline(sites, tmp_path, text)
    stats_path = tmp_path / "stats.json"
    sets = ["--set", "workers.YahooFinanceWorker.params.requests_per_second=0"]
    for group, cls in classes.items():
        sets += ["--set", f"workers.{group}.class={cls}"]
    started = utc_now_naive()
    result = run_main(
        ["--pipeline", str(pipeline), "--stats-json", str(stats_path), "--quiet", *sets],
        env={"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": pg_url},
    )
    ended = utc_now_naive()

    assert result.returncode == 0, result.stderr[-3000:]
    assert_served_prices(read_rows(pg_url), symbols, started, ended)
    stats = json.loads(stats_path.read_text())
    assert {group: stats["groups"][group]["mode"] for group in modes} == modes
    assert stats["lost"] == 0 and stats["dead_letters"] == 0
