"""Shared test fixtures: the local fake sites, a fresh PostgreSQL database, a thread-leak check."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

# The fault table (`--reliability-report`, the `reliability` fixture): the plugin tests/reliability.py,
# imported here first for its PG_ADMIN_URL (so registered for pytest's assertion rewriting before that).
pytest.register_assert_rewrite("reliability")
pytest_plugins = ("reliability",)

from reliability import PG_ADMIN_URL  # noqa: E402
from sites import FakeSites  # noqa: E402

SHIPPED_PIPELINE = ROOT / "pipelines" / "wiki_yahoo_scraper_pipeline.yaml"
MAIN_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def no_thread_left_running():
    """Every test must end every thread it started (servers and pipelines alike)."""
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leftover:
        thread.join(5)
    still = [t.name for t in leftover if t.is_alive()]
    assert not still, f"threads left running after the test: {still}"


#: The tests' Redis: a database of their own on the local server (a user's runs are in 0), each test's keys under
#: a prefix of its own (REDIS_KEY_PREFIX), so tests running side by side, in this session or another, never mix.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(autouse=True)
def redis_keys_of_the_test(monkeypatch):
    """In-process executors and `python main.py` alike read REDIS_URL and REDIS_KEY_PREFIX: each test's runs go
    to the tests' database under a prefix of its own, and every key it made is deleted afterwards (a finished
    run's keys would stay a day). A test on a redis-server of its own passes its own REDIS_URL."""
    import redis

    prefix = f"yptest-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    yield prefix
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.ConnectionError:
        pass  # no Redis here: this test made no keys
    finally:
        client.close()


@pytest.fixture
def sites():
    """Fake Wikipedia + Yahoo on 127.0.0.1, serving the saved page and a chart for every symbol."""
    with FakeSites() as server:
        yield server


@pytest.fixture(scope="session")
def pg_admin():
    """An engine on the local PostgreSQL's maintenance database. The tests need it, in CI or not: without it
    they fail saying so (a skip would show a developer green with the database tests never run)."""
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        unreachable = str(exc).splitlines()[0]
    else:
        unreachable = ""
    if unreachable:
        engine.dispose()
        pytest.fail(
            f'the tests need PostgreSQL at {PG_ADMIN_URL} (README, "Two commands"; '
            f"TEST_PG_ADMIN_URL names another) and it is not reachable: {unreachable}",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin):
    """URL of a brand-new database, dropped after the test."""
    with fresh_database(pg_admin) as url:
        yield url


@contextmanager
def fresh_database(pg_admin: sa.Engine) -> Iterator[str]:
    """A brand-new database on the local PostgreSQL: its URL; dropped at the end."""
    name = f"pipeline_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def local_pipeline(sites: FakeSites, tmp_path: Path, text: str | None = None, **replace: str) -> Path:
    """The shipped pipeline file with its URLs pointed at `sites`, and any other text replaced."""
    text = text or SHIPPED_PIPELINE.read_text()
    text = (
        text.replace("https://en.wikipedia.org/wiki/List_of_S%26P_500_companies", sites.wiki_url)
        .replace("https://query1.finance.yahoo.com/v8/finance/chart/{symbol}", sites.chart_url)
        .replace("https://finance.yahoo.com/quote/{symbol}", sites.quote_url)
    )
    for old, new in replace.items():
        assert old in text, f"{old!r} not in the pipeline text"
        text = text.replace(old, new)
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


@dataclass
class MainRun:
    """The outcome of `python main.py`."""

    returncode: int
    stdout: str
    stderr: str


def run_main(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout_s: float = MAIN_TIMEOUT_S
) -> MainRun:
    """Run `python main.py ARGS` as a user would, with a clean environment plus `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTGRES_", "DATABASE_URL", "PIPELINE_LOCATION", "DEAD_LETTER_PATH", "DATA_DIR"))
    }
    base["ENV_FILE"] = os.devnull  # a developer's .env.local must not point tests at their database
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    return MainRun(result.returncode, result.stdout, result.stderr)


def run_stage(
    tmp_path: Path,
    stage: str,
    *,
    key: str,
    sink: str,
    items: int,
    instances: int = 1,
    processes: int = 0,
    env: dict[str, str] | None = None,
) -> MainRun:
    """`python main.py` on Source (items 0..items-1) -> Stage (fixture_workers.<stage>, params: key) ->
    Collect (under `sink`), written to tmp_path/pipeline.yaml; dead letters and data under tmp_path."""
    (tmp_path / "pipeline.yaml").write_text(
        "queues:\n  - name: Numbers\n  - name: Out\nworkers:\n"
        "  - name: Source\n    location: fixture_workers\n    class: Source\n"
        f"    input_values: {list(range(items))}\n    output_queues: [Numbers]\n"
        f"  - name: Stage\n    location: fixture_workers\n    class: {stage}\n    instances: {instances}\n"
        + (f"    processes: {processes}\n" if processes else "")
        + f"    input_queue: Numbers\n    output_queues: [Out]\n    params:\n      key: {key}\n"
        f"  - name: Sink\n    location: fixture_workers\n    class: Collect\n    input_queue: Out\n"
        f"    params:\n      key: {sink}\n"
    )
    return run_main(
        ["--pipeline", str(tmp_path / "pipeline.yaml"), "--quiet", "--stats-json", str(tmp_path / "s.json")],
        env={
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
            "DATA_DIR": str(tmp_path / "data"),
            "DEAD_LETTER_PATH": str(tmp_path / "dl.jsonl"),
            **(env or {}),
        },
    )
