"""The sink's table and writes, against the real PostgreSQL and a SQLite file; and which database the
environment picks (core.storage)."""

from __future__ import annotations

import getpass
import json
import logging
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sites import MARKET_TIME, SP500_PAGE, FakeSites

from conftest import MainRun, local_pipeline, run_main
from core.base import codec
from core.base.errors import StartupError
from core.base.paths import PROJECT_DIR
from core.base.redact import redact
from core.storage.database import open_database
from core.storage.settings import database_url, settings_hint
from core.storage.sqlalchemy_db import make_engine
from core.storage.url import DatabaseConfigError, describe
from workers.postgres_worker import COLUMNS, PostgresWorker
from workers.wiki_worker import parse_constituents

PASSWORD = "hunter2-s3cret"
T0 = datetime(2024, 9, 18, 20, 0, 2)
FALLBACK_INDEX = "prices_symbol_extracted_time_without_market_time_key"
COURSE_TABLE = {
    "postgresql": "CREATE TABLE prices (id serial PRIMARY KEY, symbol text, price double precision, "
    "extracted_time timestamp)",
    "sqlite": "CREATE TABLE prices (id INTEGER PRIMARY KEY AUTOINCREMENT, symbol text, price double precision, "
    "extracted_time timestamp)",
}


@pytest.fixture(params=["postgresql", "sqlite"])
def database_env(request, tmp_path) -> dict:
    """Settings for an empty database of each kind."""
    if request.param == "postgresql":
        return {"DATABASE_URL": request.getfixturevalue("pg_url")}
    return {"DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def database(database_env):
    """The database as the sink opens it (psycopg2 directly on PostgreSQL, SQLAlchemy on SQLite)."""
    database = open_database(database_url(database_env))
    yield database
    database.close()


@pytest.fixture
def engine(database_env, database):
    """A SQLAlchemy engine on the same database, to look at what the sink did."""
    engine = make_engine(database_url(database_env))
    assert engine.dialect.name == database.name
    yield engine
    engine.dispose()


def record(symbol: str, price: float, extracted_time: datetime, **extra) -> dict:
    return {
        "symbol": symbol,
        "price": price,
        "currency": "USD",
        "market_time": T0,
        "extracted_time": extracted_time,
        **extra,
    }


def rows(engine) -> list[dict]:
    """Every row, times as datetimes on both databases."""
    table = sa.Table("prices", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(table.c.id))]


def test_create_table_has_the_course_columns_and_ours(engine, database):
    PostgresWorker(database).create_table()

    inspector = sa.inspect(engine)
    columns = {column["name"]: column for column in inspector.get_columns("prices")}
    assert set(columns) == {"id", "symbol", "price", "extracted_time", "currency", "market_time"}
    assert inspector.get_pk_constraint("prices")["constrained_columns"] == ["id"]
    assert isinstance(columns["price"]["type"], sa.Float)
    for name in ("extracted_time", "market_time"):
        assert isinstance(columns[name]["type"], sa.DateTime)
        assert not columns[name]["type"].timezone
    unique = {index["name"]: index["column_names"] for index in inspector.get_indexes("prices") if index["unique"]}
    assert unique == {
        "prices_symbol_market_time_key": ["symbol", "market_time"],
        FALLBACK_INDEX: ["symbol", "extracted_time"],
    }
    assert [index.where for index in database.unique_indexes("prices") if index.name == FALLBACK_INDEX] == [
        "(market_time IS NULL)" if database.name == "postgresql" else "market_time IS NULL"
    ]


def test_postgresql_column_types_are_the_courses(pg_url):
    database = open_database(database_url({"DATABASE_URL": pg_url}))
    engine = make_engine(database_url({"DATABASE_URL": pg_url}))
    try:
        PostgresWorker(database).create_table()
        with engine.connect() as conn:
            types = dict(
                conn.execute(
                    sa.text("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'prices'")
                ).all()
            )
            id_default = conn.execute(
                sa.text(
                    "SELECT column_default FROM information_schema.columns "
                    "WHERE table_name = 'prices' AND column_name = 'id'"
                )
            ).scalar_one()
    finally:
        database.close()
        engine.dispose()
    assert types == {
        "id": "integer",
        "symbol": "text",
        "price": "double precision",
        "extracted_time": "timestamp without time zone",
        "currency": "text",
        "market_time": "timestamp without time zone",
    }
    assert id_default.startswith("nextval(")  # serial, as in the course


def test_create_table_twice_changes_nothing(engine, database):
    writer = PostgresWorker(database)
    writer.create_table()
    writer.insert([record("AAPL", 220.69, T0)])

    writer.create_table()

    assert [row["symbol"] for row in rows(engine)] == ["AAPL"]


def test_same_batch_twice_is_stored_once(engine, database):
    writer = PostgresWorker(database)
    writer.create_table()
    batch = [
        record("AAPL", 220.69, T0),
        record("BRK.B", 456.5, T0),
        record("AAPL", 221.0, T0 + timedelta(1), market_time=T0 + timedelta(1)),
    ]

    assert writer.insert(batch) == 3
    assert writer.insert(batch) == 0

    stored = rows(engine)
    assert len(stored) == 3
    assert sorted((row["symbol"], row["market_time"]) for row in stored) == sorted(
        (item["symbol"], item["market_time"]) for item in batch
    )
    assert len({row["id"] for row in stored}) == 3


def test_a_batch_overlapping_stored_rows_adds_only_the_new_ones(engine, database):
    writer = PostgresWorker(database)
    writer.create_table()
    writer.insert([record("AAPL", 220.69, T0)])

    writer.insert([record("AAPL", 999.0, T0), record("MSFT", 430.0, T0)])

    assert {(row["symbol"], row["price"]) for row in rows(engine)} == {("AAPL", 220.69), ("MSFT", 430.0)}


def test_an_observation_fetched_again_is_stored_once_and_the_first_row_wins(engine, database):
    writer = PostgresWorker(database)
    writer.create_table()
    writer.insert([record("AAPL", 220.69, T0 + timedelta(minutes=5))])

    # The same market time fetched again later (a replay, an abandoned item that had completed, an
    # at-least-once repeat): nothing new; another market time is a new observation.
    assert writer.insert([record("AAPL", 220.7, T0 + timedelta(minutes=9)), record("MSFT", 430.0, T0)]) == 1
    assert writer.insert([record("AAPL", 221.0, T0 + timedelta(days=1), market_time=T0 + timedelta(days=1))]) == 1

    assert [(row["symbol"], row["price"], row["market_time"], row["extracted_time"]) for row in rows(engine)] == [
        ("AAPL", 220.69, T0, T0 + timedelta(minutes=5)),
        ("MSFT", 430.0, T0, T0),
        ("AAPL", 221.0, T0 + timedelta(days=1), T0 + timedelta(days=1)),
    ]


def test_a_price_without_a_market_time_is_told_apart_by_its_extracted_time(engine, database):
    writer = PostgresWorker(database)
    writer.create_table()
    quote_page = record("AAPL", 220.69, T0, market_time=None)  # the quote-page fallback carries no market time
    writer.insert([quote_page, record("AAPL", 220.69, T0)])

    # The same record again (a retried batch, a replayed sink record) is a no-op, alone or beside keyed rows;
    # the price fetched again (a new extracted_time) cannot be told from a new observation, so it is a new row.
    assert writer.insert([quote_page]) == 0
    assert writer.insert([quote_page, record("AAPL", 220.69, T0), record("MSFT", 430.0, T0)]) == 1
    assert writer.insert([{**quote_page, "extracted_time": T0 + timedelta(minutes=1)}]) == 1

    assert Counter((row["symbol"], row["market_time"], row["extracted_time"]) for row in rows(engine)) == Counter(
        [("AAPL", None, T0), ("AAPL", T0, T0), ("MSFT", T0, T0), ("AAPL", None, T0 + timedelta(minutes=1))]
    )


def test_aware_datetimes_are_stored_as_utc_wall_time(engine, database):
    writer = PostgresWorker(database)
    writer.create_table()
    berlin = timezone(timedelta(hours=2))
    new_york = timezone(timedelta(hours=-4))

    writer.insert(
        [
            record(
                "AAPL",
                220.69,
                datetime(2024, 9, 18, 22, 30, 0, 123456, tzinfo=berlin),
                market_time=datetime(2024, 9, 18, 16, 0, 2, tzinfo=new_york),
            )
        ]
    )

    (row,) = rows(engine)
    assert row["extracted_time"] == datetime(2024, 9, 18, 20, 30, 0, 123456)
    assert row["market_time"] == T0
    assert row["extracted_time"].tzinfo is None


def test_naive_datetimes_and_missing_fields_are_stored_as_given(engine, database):
    writer = PostgresWorker(database)
    writer.create_table()

    writer.insert([{"symbol": "AAPL", "price": 220.69, "extracted_time": T0}])  # quote-page record: no meta

    (row,) = rows(engine)
    assert (row["extracted_time"], row["currency"], row["market_time"]) == (T0, None, None)


def test_course_era_table_gets_the_missing_columns_and_keeps_its_row(engine, database):
    with engine.begin() as conn:
        conn.execute(sa.text(COURSE_TABLE[engine.dialect.name]))
        conn.execute(
            sa.text("INSERT INTO prices (symbol, price, extracted_time) VALUES ('AAPL', 150.5, :t)"),
            {"t": T0 - timedelta(days=700)},
        )
    writer = PostgresWorker(database)

    writer.create_table()
    writer.insert([record("AAPL", 220.69, T0)] * 2)

    columns = {column["name"] for column in sa.inspect(engine).get_columns("prices")}
    assert columns == {"id", "symbol", "price", "extracted_time", "currency", "market_time"}
    old, new = rows(engine)
    assert (old["symbol"], old["price"], old["extracted_time"]) == ("AAPL", 150.5, T0 - timedelta(days=700))
    assert (old["currency"], old["market_time"]) == (None, None)
    assert (new["symbol"], new["price"], new["currency"], new["market_time"]) == ("AAPL", 220.69, "USD", T0)
    assert new["id"] > old["id"]


def make_course_table(engine, *symbols_at: tuple[str, datetime]) -> None:
    """The course's hand-made table, holding these (symbol, extracted_time) rows."""
    with engine.begin() as conn:
        conn.execute(sa.text(COURSE_TABLE[engine.dialect.name]))
        for symbol, at in symbols_at:
            conn.execute(
                sa.text("INSERT INTO prices (symbol, price, extracted_time) VALUES (:s, 1.5, :t)"),
                {"s": symbol, "t": at},
            )


def course_columns(engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("prices")}


def test_changes_to_a_hand_made_table_are_logged_with_the_sql_that_undoes_them(engine, database, caplog):
    make_course_table(engine, ("AAPL", T0))
    caplog.set_level(logging.WARNING, logger="workers.postgres_worker")

    PostgresWorker(database).create_table()

    logged = [record.getMessage() for record in caplog.records]
    assert logged == [
        "table prices: added the unique index prices_symbol_market_time_key on (symbol, market_time), so an "
        "observation (a symbol at one market time) is stored once however often it is fetched or written. To undo: "
        "DROP INDEX prices_symbol_market_time_key;",
        f"table prices: added the unique index {FALLBACK_INDEX} on (symbol, extracted_time) where market_time IS NULL "
        "(rows without a market time: prices from the quote page, rows stored before the column existed), so a "
        f"retried batch of them stores nothing twice. To undo: DROP INDEX {FALLBACK_INDEX};",
        "table prices: added column(s) currency TEXT, market_time TIMESTAMP WITHOUT TIME ZONE, which this runner "
        "stores; its rows are kept. To undo: ALTER TABLE prices DROP COLUMN currency; "
        "ALTER TABLE prices DROP COLUMN market_time;"
        if engine.dialect.name == "postgresql"
        else "table prices: added column(s) currency TEXT, market_time DATETIME, which this runner stores; its rows are "
        "kept. To undo: ALTER TABLE prices DROP COLUMN currency; ALTER TABLE prices DROP COLUMN market_time;",
    ]
    undo = " ".join(message.split("To undo: ")[1] for message in logged)
    engine.dispose()  # run it on a new connection, as a user would from a new shell (SQLite keeps a stale schema)
    with engine.begin() as conn:
        for statement in filter(None, (s.strip() for s in undo.split(";"))):
            conn.execute(sa.text(statement))
    assert course_columns(engine) == {"id", "symbol", "price", "extracted_time"}
    assert not [index for index in sa.inspect(engine).get_indexes("prices") if index["unique"]]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT symbol, price FROM prices")).all() == [("AAPL", 1.5)]


def test_hand_made_table_with_duplicates_refuses_the_run_unchanged_and_says_how_to_find_them(engine, database):
    make_course_table(engine, ("AAPL", T0), ("AAPL", T0), ("MSFT", T0), ("MSFT", None), ("MSFT", None))

    with pytest.raises(StartupError) as caught:
        PostgresWorker(database).create_table()

    message = str(caught.value)
    assert message.startswith(
        "table prices holds 1 (symbol, extracted_time) pair(s) more than once, so the unique "
        f"index {FALLBACK_INDEX} that keeps a price from being stored twice cannot be added."
    )
    assert "The run refuses to start: nothing was fetched and the table is unchanged." in message
    find = message.split("Find them with: ")[1].split(";")[0]
    with engine.connect() as conn:
        assert [tuple(row)[0] for row in conn.execute(sa.text(find))] == ["AAPL"]
    assert course_columns(engine) == {"id", "symbol", "price", "extracted_time"}
    fix = "DELETE" + message.split("DELETE")[1].split("; or give")[0]
    with engine.begin() as conn:
        conn.execute(sa.text(fix))
    PostgresWorker(database).create_table()  # fixed as the message says, the table can be used
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM prices")).scalar() == 4


@pytest.mark.parametrize(
    "fallback", ["(extracted_time, symbol)", "(symbol, extracted_time) WHERE (market_time IS NULL)"]
)
def test_hand_made_unique_keys_on_the_same_columns_are_used_as_they_are(engine, database, caplog, fallback):
    make_course_table(engine)
    with engine.begin() as conn:
        for column, kind in (("currency", "text"), ("market_time", "timestamp")):
            conn.execute(sa.text(f"ALTER TABLE prices ADD COLUMN {column} {kind}"))
        conn.execute(sa.text("CREATE UNIQUE INDEX my_key ON prices (market_time, symbol)"))
        conn.execute(sa.text(f"CREATE UNIQUE INDEX my_fallback ON prices {fallback}"))
    caplog.set_level(logging.WARNING, logger="workers.postgres_worker")
    writer = PostgresWorker(database)

    writer.create_table()
    writer.insert([record("AAPL", 220.69, T0)] * 2 + [record("MSFT", 430.0, T0, market_time=None)] * 2)

    assert caplog.records == []
    assert sorted(index["name"] for index in sa.inspect(engine).get_indexes("prices")) == ["my_fallback", "my_key"]
    assert len(rows(engine)) == 2


def test_a_partial_key_over_other_rows_is_not_taken_for_the_sinks(engine, database):
    make_course_table(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE UNIQUE INDEX other_rows ON prices (symbol, extracted_time) WHERE price > 0"))

    PostgresWorker(database).create_table()

    assert FALLBACK_INDEX in {index["name"] for index in sa.inspect(engine).get_indexes("prices")}


def test_close_closes_every_connection(engine, database, pg_admin):
    writer = PostgresWorker(database)
    writer.create_table()
    writer.insert([record("AAPL", 220.69, T0)])
    assert open_connections(database, pg_admin) >= 1

    writer.close()

    deadline = time.monotonic() + 10  # the server lists a closed connection until its backend has exited
    while open_connections(database, pg_admin) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_connections(database, pg_admin) == 0


def open_connections(database, pg_admin) -> int:
    """The sink's connections to its database: as the server counts them, or SQLAlchemy's pool on SQLite."""
    if database.name == "sqlite":
        return database.engine.pool.checkedin()
    with pg_admin.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND application_name = 'yaml-pipeline'"),
            {"db": database.url.database},
        ).scalar()


# --- which database: core.storage.settings.database_url -------------------------------------------------------------


def test_database_url_wins_and_plain_postgresql_gets_the_installed_driver():
    env = {
        "DATABASE_URL": f"postgresql://app:{PASSWORD}@db.example:6543/prices",
        "POSTGRES_HOST": "ignored",
        "DATA_DIR": "/ignored",
    }

    url = database_url(env)

    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app",
        PASSWORD,
        "db.example",
        6543,
        "prices",
    )


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+psycopg2"])
def test_other_postgresql_spellings(scheme):
    url = database_url({"DATABASE_URL": f"{scheme}://app@db.example/prices"})

    assert url.drivername == "postgresql+psycopg2"
    assert (url.host, url.database) == ("db.example", "prices")


def test_course_variables_make_a_postgresql_url():
    env = {
        "POSTGRES_USER": "course",
        "POSTGRES_PASSWORD": PASSWORD,
        "POSTGRES_HOST": "pg.local",
        "POSTGRES_PORT": "5433",
        "POSTGRES_DB": "stocks",
        "DATA_DIR": "/ignored",
    }

    url = database_url(env)

    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "course",
        PASSWORD,
        "pg.local",
        5433,
        "stocks",
    )


def test_one_course_variable_is_enough_and_the_rest_default(monkeypatch):
    monkeypatch.setenv("LOGNAME", "course-login")  # getpass.getuser() reads it first, as a login shell sets it
    url = database_url({"POSTGRES_HOST": "pg.local", "POSTGRES_PASSWORD": ""})

    assert (url.username, url.password, url.host, url.port, url.database) == (
        "course-login",
        None,
        "pg.local",
        None,
        "postgres",
    )


def test_the_courses_empty_user_and_password_are_the_login_user_without_a_password(monkeypatch):
    monkeypatch.setenv("LOGNAME", "course-login")
    env = {"POSTGRES_USER": "", "POSTGRES_PASSWORD": "", "POSTGRES_HOST": "localhost", "POSTGRES_DB": "postgres"}

    url = database_url(env)

    assert (url.username, url.password, url.host, url.database) == ("course-login", None, "localhost", "postgres")
    assert getpass.getuser() == "course-login"


def test_pguser_wins_over_the_login_user_as_for_psql(monkeypatch):
    monkeypatch.setenv("LOGNAME", "course-login")

    url = database_url({"POSTGRES_USER": "", "POSTGRES_HOST": "localhost", "PGUSER": "analyst"})

    assert url.username == "analyst"


def test_settings_hint_names_the_empty_course_variables(monkeypatch):
    monkeypatch.setenv("LOGNAME", "course-login")

    hint = settings_hint(
        {"POSTGRES_USER": "", "POSTGRES_PASSWORD": "", "POSTGRES_HOST": "localhost", "POSTGRES_DB": "stocks"}
    )

    assert "POSTGRES_USER is empty, so it connected as 'course-login', the login user" in hint
    assert (
        "set POSTGRES_USER and POSTGRES_PASSWORD (in .env.local or the environment) to a role of the server at "
        "localhost:5432, database stocks" in hint
    )
    assert settings_hint({"DATABASE_URL": "postgresql://a@b/c"}).startswith("check DATABASE_URL")


def test_no_database_settings_mean_sqlite_under_data_dir(tmp_path):
    url = database_url({"DATA_DIR": str(tmp_path), "DATABASE_URL": "  ", "POSTGRES_USER": ""})

    assert url.get_backend_name() == "sqlite"
    assert url.database == str(tmp_path / "prices.sqlite3")


def test_sqlite_default_is_beside_main_py():
    url = database_url({})

    assert url.database == str(PROJECT_DIR / "data" / "prices.sqlite3")


def test_make_engine_creates_the_sqlite_folder(tmp_path):
    engine = make_engine(database_url({"DATA_DIR": str(tmp_path / "not" / "yet")}))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
    assert (tmp_path / "not" / "yet" / "prices.sqlite3").is_file()


def assert_no_password(exc: BaseException, password: str) -> None:
    text = "".join(traceback.format_exception(exc))
    assert password not in text


@pytest.mark.parametrize(
    "raw",
    [
        f"postgresql//app:{PASSWORD}@db.example/prices",
        f"://app:{PASSWORD}@db.example/prices",
        f"app:{PASSWORD}",
    ],
)
def test_unparsable_database_url_is_a_config_error_without_the_password(raw):
    with pytest.raises(DatabaseConfigError) as caught:
        database_url({"DATABASE_URL": raw})

    assert "DATABASE_URL" in str(caught.value)
    assert_no_password(caught.value, PASSWORD)


@pytest.mark.parametrize("port", ["notaport", ""])
def test_database_url_with_a_bad_port_is_a_config_error(port):
    with pytest.raises(DatabaseConfigError) as caught:
        database_url({"DATABASE_URL": f"postgresql://app:{PASSWORD}@db.example:{port}/prices"})

    assert_no_password(caught.value, PASSWORD)


def test_bad_postgres_port_is_a_config_error_without_the_password():
    with pytest.raises(DatabaseConfigError, match="POSTGRES_PORT") as caught:
        database_url({"POSTGRES_PASSWORD": PASSWORD, "POSTGRES_PORT": "54x2"})

    assert_no_password(caught.value, PASSWORD)


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": f"postgresql://app:{PASSWORD}@db.example/prices"},
        {"POSTGRES_PASSWORD": PASSWORD},
    ],
)
def test_the_password_is_masked_in_logs_and_descriptions(env):
    url = database_url(env)

    assert PASSWORD not in describe(url)
    assert PASSWORD not in redact(f"could not connect with {PASSWORD} to {url.render_as_string(False)}")


def test_percent_encoded_password_is_masked_in_both_forms():
    url = database_url({"DATABASE_URL": "postgresql://app:p%40ss%2Fw0rd-xyz@db.example/prices"})

    assert url.password == "p@ss/w0rd-xyz"
    assert "w0rd" not in redact("decoded p@ss/w0rd-xyz, raw p%40ss%2Fw0rd-xyz")


def test_a_url_without_a_password_is_still_logged():
    raw = "postgresql+psycopg2://app@db.example:5432/prices_log_check"
    url = database_url({"DATABASE_URL": raw})

    assert redact(f"storing into {describe(url)}") == f"storing into {raw}"


# --- the unique key end to end: `python main.py` against the local fake sites -------------------------------

SERVED_AT = datetime.fromtimestamp(MARKET_TIME, UTC).replace(tzinfo=None)  # as the sink stores it
PREVIOUS_TABLE = {  # what this runner created before the key was (symbol, market_time)
    "postgresql": [
        "CREATE TABLE prices (id SERIAL PRIMARY KEY, symbol TEXT NOT NULL, price DOUBLE PRECISION, "
        "currency TEXT, market_time TIMESTAMP WITHOUT TIME ZONE, "
        "extracted_time TIMESTAMP WITHOUT TIME ZONE)",
        "CREATE UNIQUE INDEX prices_symbol_extracted_time_key ON prices (symbol, extracted_time)",
    ],
    "sqlite": [
        "CREATE TABLE prices (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, symbol TEXT NOT NULL, price FLOAT, "
        "currency TEXT, market_time DATETIME, extracted_time DATETIME)",
        "CREATE UNIQUE INDEX prices_symbol_extracted_time_key ON prices (symbol, extracted_time)",
    ],
}


def previous_table(engine, *stored: tuple[str, float, datetime, datetime]) -> None:
    """The table as this runner made it before, holding (symbol, price, market_time, extracted_time) rows written
    as it wrote them (through SQLAlchemy's types: SQLite keeps times as text in SQLAlchemy's format)."""
    with engine.begin() as conn:
        for statement in PREVIOUS_TABLE[engine.dialect.name]:
            conn.execute(sa.text(statement))
    table = sa.Table("prices", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(table),
            [
                {
                    "symbol": symbol,
                    "price": price,
                    "currency": "USD",
                    "market_time": market,
                    "extracted_time": extracted,
                }
                for symbol, price, market, extracted in stored
            ],
        )


@pytest.fixture(scope="module")
def page_symbols() -> list[str]:
    """Every symbol on the saved Wikipedia page."""
    return parse_constituents(SP500_PAGE.read_bytes())


def main_run(sites: FakeSites, folder, database_env: dict, name: str, *args: str) -> tuple[MainRun, dict]:
    """`python main.py` on the shipped pipeline pointed at `sites` (no rate limit); its result and stats."""
    pipeline = folder / "pipeline.yaml"
    if not pipeline.exists():
        local_pipeline(sites, folder, **{"requests_per_second: 5": "requests_per_second: 0"})
    stats = folder / f"{name}-stats.json"
    result = run_main(
        ["--pipeline", str(pipeline), "--quiet", "--stats-json", str(stats), *args],
        env={"DATA_DIR": str(folder / "data"), **database_env, "DEAD_LETTER_PATH": str(folder / f"{name}-dead.jsonl")},
    )
    return result, json.loads(stats.read_text())


def dead_letter(group: str, item, kind: str = "abandoned") -> str:
    """A dead-letter line as the runner writes one."""
    return (
        json.dumps(
            {
                "time": "2026-11-26T11:27:13.000+00:00",
                "pipeline": "wiki_yahoo_scraper_pipeline",
                "group": group,
                "kind": kind,
                "item": codec.encode(item),
                "error": "forced exit",
                "attempts": 1,
            }
        )
        + "\n"
    )


def observations(engine) -> Counter:
    """How often each (symbol, market_time) is stored."""
    return Counter((row["symbol"], row["market_time"]) for row in rows(engine))


def stored_twice(engine) -> dict:
    """The (symbol, market_time) observations stored more than once, with their counts; a few, for the message."""
    return dict(sorted((key, n) for key, n in observations(engine).items() if n > 1 and key[1] is not None)[:5])


def index_columns(engine) -> dict[str, list[str]]:
    return {index["name"]: index["column_names"] for index in sa.inspect(engine).get_indexes("prices")}


def test_replaying_a_dead_letter_file_twice_stores_each_observation_once(database_env, engine, tmp_path, page_symbols):
    with FakeSites(unknown={"MMM"}) as sites:
        first, stats = main_run(sites, tmp_path, database_env, "first")
        assert first.returncode == 1, first.stderr
        assert stats["groups"]["PostgresWorker"]["stored"] == len(page_symbols) - 1
        stored = {row["symbol"]: row for row in rows(engine)}
        msft = {key: stored["MSFT"][key] for key in COLUMNS}
        msft.update(
            market_time=msft["market_time"].replace(tzinfo=UTC),
            extracted_time=msft["extracted_time"].replace(tzinfo=UTC),
        )
        # The run's own dead letter (MMM failed), and items that had in fact completed: the source's page, a
        # symbol, and a record the sink stored, as a forced exit marks them.
        replay = tmp_path / "replay.jsonl"
        replay.write_text(
            (tmp_path / "first-dead.jsonl").read_text()
            + dead_letter("WikiWorker", sites.wiki_url)
            + dead_letter("YahooFinanceWorker", "AAPL")
            + dead_letter("PostgresWorker", msft)
        )
        sites.unknown.clear()  # MMM is known now: the replay stores it

        again = [main_run(sites, tmp_path, database_env, name, "--replay", str(replay)) for name in ("r1", "r2")]

    for result, stats in again:
        assert result.returncode == 0, result.stderr
        sink = stats["groups"]["PostgresWorker"]
        # Every symbol of the page again, MMM, AAPL and the MSFT record; each counted as stored (it is in the table).
        assert (sink["received"], sink["stored"], stats["dead_letters"], stats["lost"]) == (
            len(page_symbols) + 3,
            len(page_symbols) + 3,
            0,
            0,
        )
    assert stored_twice(engine) == {}
    assert observations(engine) == Counter({(symbol, SERVED_AT): 1 for symbol in page_symbols})
    after = {row["symbol"]: row for row in rows(engine)}
    for symbol in ("AAPL", "MSFT"):  # the first row stored wins
        assert after[symbol] == stored[symbol]
    assert "already stored" in again[1][0].stderr


def test_a_second_run_stores_only_what_the_market_moved(database_env, engine, tmp_path, page_symbols):
    with FakeSites() as sites:
        runs = [main_run(sites, tmp_path, database_env, "first"), main_run(sites, tmp_path, database_env, "same")]
        sites.market_time = MARKET_TIME + 86400  # a trading day later
        runs.append(main_run(sites, tmp_path, database_env, "next day"))

    assert [result.returncode for result, _ in runs] == [0, 0, 0], runs[-1][0].stderr
    later = SERVED_AT + timedelta(days=1)
    assert stored_twice(engine) == {}
    assert observations(engine) == Counter({(symbol, at): 1 for symbol in page_symbols for at in (SERVED_AT, later)})


def test_the_previous_tables_key_is_migrated_logged_and_undone(database_env, engine, tmp_path, page_symbols):
    previous_table(engine, ("AAPL", 1.5, SERVED_AT, SERVED_AT), ("ZTS", 2.5, SERVED_AT - timedelta(days=1), SERVED_AT))

    with FakeSites() as sites:
        result, stats = main_run(sites, tmp_path, database_env, "run")

    assert result.returncode == 0, result.stderr
    assert stats["groups"]["PostgresWorker"]["stored"] == len(page_symbols)
    expected = Counter({(symbol, SERVED_AT): 1 for symbol in page_symbols})
    expected[("ZTS", SERVED_AT - timedelta(days=1))] = 1
    assert stored_twice(engine) == {}
    assert observations(engine) == expected
    assert next(row for row in rows(engine) if row["symbol"] == "AAPL")["price"] == 1.5  # kept: it was first
    assert index_columns(engine) == {
        "prices_symbol_extracted_time_key": ["symbol", "extracted_time"],
        "prices_symbol_market_time_key": ["symbol", "market_time"],
    }
    logged = [line for line in result.stderr.splitlines() if "table prices:" in line]
    assert len(logged) == 1 and logged[0].endswith(
        "table prices: added the unique index prices_symbol_market_time_key on (symbol, market_time), so an "
        "observation (a symbol at one market time) is stored once however often it is fetched or written. "
        "To undo: DROP INDEX prices_symbol_market_time_key;"
    ), result.stderr
    engine.dispose()
    with engine.begin() as conn:
        conn.execute(sa.text(logged[0].split("To undo: ")[1]))
    assert index_columns(engine) == {"prices_symbol_extracted_time_key": ["symbol", "extracted_time"]}


def test_the_course_table_gets_both_keys_logged_and_undone(database_env, engine, tmp_path, page_symbols):
    make_course_table(engine, ("AAPL", T0 - timedelta(days=700)), ("AAPL", T0 - timedelta(days=699)))

    with FakeSites() as sites:
        result, _ = main_run(sites, tmp_path, database_env, "run")

    assert result.returncode == 0, result.stderr
    stored = rows(engine)
    assert [(row["symbol"], row["market_time"]) for row in stored[:2]] == [("AAPL", None), ("AAPL", None)]
    assert stored_twice(engine) == {}
    assert observations(engine) == Counter({**{(symbol, SERVED_AT): 1 for symbol in page_symbols}, ("AAPL", None): 2})
    assert index_columns(engine) == {
        "prices_symbol_market_time_key": ["symbol", "market_time"],
        FALLBACK_INDEX: ["symbol", "extracted_time"],
    }
    logged = [line.split("table prices: ")[1] for line in result.stderr.splitlines() if "table prices:" in line]
    assert [line.split(",")[0] for line in logged] == [
        "added the unique index prices_symbol_market_time_key on (symbol",
        f"added the unique index {FALLBACK_INDEX} on (symbol",
        "added column(s) currency TEXT",
    ]
    assert logged[1].startswith(
        f"added the unique index {FALLBACK_INDEX} on (symbol, extracted_time) where "
        "market_time IS NULL (rows without a market time: prices from the quote page, rows "
        "stored before the column existed)"
    )
    undo = " ".join(line.split("To undo: ")[1] for line in logged)
    engine.dispose()
    with engine.begin() as conn:
        for statement in filter(None, (s.strip() for s in undo.split(";"))):
            conn.execute(sa.text(statement))
    assert course_columns(engine) == {"id", "symbol", "price", "extracted_time"}
    assert index_columns(engine) == {}


def test_a_previous_table_holding_an_observation_twice_refuses_the_run_unchanged(database_env, engine, tmp_path):
    previous_table(
        engine, ("AAPL", 1.5, SERVED_AT, SERVED_AT), ("AAPL", 1.5, SERVED_AT, SERVED_AT + timedelta(hours=1))
    )
    before = rows(engine)

    with FakeSites() as sites:
        result, stats = main_run(sites, tmp_path, database_env, "run")
        assert sites.requests == []

    assert result.returncode == 1 and stats["finish_reason"] == "failed", result.stderr
    message = result.stdout
    assert (
        "PostgresWorker cannot start: table prices holds 1 (symbol, market_time) pair(s) more than once, so the "
        "unique index prices_symbol_market_time_key"
    ) in message
    assert "The run refuses to start: nothing was fetched and the table is unchanged." in message
    find = message.split("Find them with: ")[1].split(";")[0]
    with engine.connect() as conn:
        assert [tuple(row)[0] for row in conn.execute(sa.text(find))] == ["AAPL"]
    assert rows(engine) == before
    assert index_columns(engine) == {"prices_symbol_extracted_time_key": ["symbol", "extracted_time"]}
