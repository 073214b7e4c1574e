"""--record-http and --offline (core/http/tape.py): a user's pipeline recorded against a local server, then replayed
with that server stopped, gives the same rows in threads, asyncio and worker processes; a request that was not
recorded is its item's dead letter; what is secret never reaches a cassette; a folder without the pipeline's
cassette is a configuration error."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import ROOT, run_main
from core.http import tape

WORKERS = """\
from workers.base import ItemError
from workers.http_worker import AsyncHttpWorker, HttpWorker

SECRET_HEADERS = {"Authorization": "Bearer TOKEN-SECRET-1"}


def record(item, status, body, attempts):
    if status != 200:
        raise ItemError(f"HTTP {status}")
    # currency carries how many tries the answer took, so that the rows show a replayed 429 was retried
    return {"symbol": f"S{item}", "price": float(body), "currency": f"T{attempts}"}


class Fetch(HttpWorker):
    def __init__(self, *, base_url, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url

    def process(self, item):
        response = self.http.get(f"{self.base_url}/price/{item}?api_key=KEY-SECRET-2", headers=SECRET_HEADERS)
        return record(item, response.status_code, response.text, response.attempts)


class AsyncFetch(AsyncHttpWorker):
    def __init__(self, *, base_url, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url

    async def process(self, item):
        page = await self.aio_http.get(f"{self.base_url}/price/{item}?api_key=KEY-SECRET-2", headers=SECRET_HEADERS)
        return record(item, page.status, page.body.decode(), page.attempts)
"""

PIPELINE = """\
queues:
  - {{name: Items, maxsize: 10}}
  - {{name: Records, maxsize: 10}}
workers:
  - {{name: Source, location: fixture_workers, class: Source, input_values: {values}, output_queues: [Items]}}
  - {{name: Fetch, location: price_workers, class: {cls}, instances: 4, {extra}input_queue: Items,
     output_queues: [Records], params: {{base_url: "{url}", backoff_s: 0.05}}}}
  - {{name: Store, location: workers.postgres_worker, class: PostgresMasterScheduler, input_queue: Records}}
"""

MODES = {
    "threads": ("Fetch", ""),
    "asyncio": ("AsyncFetch", ""),
    "processes": ("Fetch", "processes: 2, "),
    "asyncio-in-processes": ("AsyncFetch", "processes: 2, "),
}
SECRETS = ("TOKEN-SECRET-1", "KEY-SECRET-2", "COOKIE-SECRET-3")
ITEMS = list(range(20))
THROTTLED = 7  # its first request is answered 429 with Retry-After: 1


class PriceServer:
    """GET /price/N answers N * 1.5 (and sets a cookie); the first request for THROTTLED is a 429."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        lock = threading.Lock()
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                with lock:
                    hits[path] += 1
                    first = hits[path] == 1
                number = path.rsplit("/", 1)[-1]
                if path == f"/price/{THROTTLED}" and first:
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    body = b"slow down"
                else:
                    self.send_response(200)
                    self.send_header("Set-Cookie", "session=COOKIE-SECRET-3; Path=/; HttpOnly")
                    body = str(int(number) * 1.5).encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="price-server", daemon=True)

    def __enter__(self) -> PriceServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        assert not self.thread.is_alive()


def rows(database: Path) -> set[tuple[str, float, str]]:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return {tuple(row) for row in conn.execute(sa.text("SELECT symbol, price, currency FROM prices"))}
    finally:
        engine.dispose()


def dead_letters(stats: Path) -> list[dict]:
    path = json.loads(stats.read_text())["dead_letter_path"]
    return [json.loads(line) for line in Path(path).read_text().splitlines()] if path else []


def write_pipeline(folder: Path, mode: str, url: str, values: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "price_workers.py").write_text(WORKERS)
    cls, extra = MODES[mode]
    path = folder / "prices.yaml"
    path.write_text(PIPELINE.format(values=values, cls=cls, extra=extra, url=url))
    return path


def connections(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("mode", sorted(MODES))
def test_recorded_then_replayed_with_the_server_stopped(tmp_path: Path, mode: str) -> None:
    cassettes = tmp_path / "cassettes"
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": f"{ROOT / 'tests' / 'connect_log'}:{ROOT / 'tests'}:{ROOT}",
    }
    with PriceServer() as server:
        pipeline = write_pipeline(tmp_path / "p", mode, server.url, ITEMS)
        recorded_db = tmp_path / "recorded.sqlite"
        run = run_main(
            ["--pipeline", str(pipeline), "--record-http", str(cassettes), "--quiet"],
            env={**env, "DATABASE_URL": f"sqlite:///{recorded_db}", "CONNECT_LOG": str(tmp_path / "recording.log")},
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert sum(server.hits.values()) == len(ITEMS) + 1  # the 429, then its retry
    expected = {(f"S{n}", n * 1.5, "T2" if n == THROTTLED else "T1") for n in ITEMS}
    assert rows(recorded_db) == expected

    files = sorted(cassettes.glob("*.jsonl"))
    assert files and all(f.name.startswith("prices.") for f in files)
    text = "".join(f.read_text() for f in files)
    for secret in SECRETS:
        assert secret not in text
    assert '"session=REDACTED; Path=/; HttpOnly"' in text
    assert sum(len(f.read_text().splitlines()) - 1 for f in files) == len(ITEMS) + 1

    # The server is gone: every answer comes from the cassettes; two items more were never recorded.
    log = tmp_path / "connect.log"
    stats = tmp_path / "stats.json"
    replay = write_pipeline(tmp_path / "p", mode, server.url, [*ITEMS, 20, 21])
    run = run_main(
        ["--pipeline", str(replay), "--offline", str(cassettes), "--quiet", "--stats-json", str(stats)],
        env={**env, "CONNECT_LOG": str(log), "DATABASE_URL": f"sqlite:///{tmp_path / 'not-this.sqlite'}"},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert rows(cassettes / "prices.sqlite") == expected
    assert not (tmp_path / "not-this.sqlite").exists()  # an offline run never stores into the configured database
    letters = dead_letters(stats)
    assert sorted(letter["item"] for letter in letters) == [20, 21]
    for letter in letters:
        assert f"not recorded: GET {server.url}/price/{letter['item']} " in letter["error"], letter
        assert letter["group"] == "Fetch"
    port = server.url.rsplit(":", 1)[1]
    assert [
        line for line in connections(tmp_path / "recording.log") if line.endswith(f" {port}")
    ]  # the log sees connections
    assert not [line for line in connections(log) if line.endswith(f" {port}")], connections(log)
    assert "not recorded: GET" in (run.stdout + run.stderr)


def test_a_recorded_answer_is_given_in_order_then_the_last_again(tmp_path: Path) -> None:
    recorder = tape.Recorder(tmp_path, "p", "r1")
    recorder.record("GET", "http://h/x?crumb=abc&n=1", 429, "Too Many", [("Retry-After", "1")], b"wait")
    recorder.record("GET", "http://h/x?crumb=def&n=1", 200, "OK", [("Set-Cookie", "A3=zzz; Path=/")], b"\xff\x00")
    text = recorder.path.read_text()
    assert "abc" not in text and "def" not in text and "zzz" not in text and "A3=REDACTED; Path=/" in text
    player = tape.load(tmp_path, "p")
    statuses = [player.answer("GET", f"http://h/x?n=1&crumb={c}").status for c in ("1", "2", "3")]  # type: ignore[union-attr]
    assert statuses == [429, 200, 200]
    assert player.answer("GET", "http://h/x?n=1").body == b"\xff\x00"  # type: ignore[union-attr]
    assert player.answer("GET", "http://h/x?n=2") is None


def test_a_secret_answer_is_never_written(tmp_path: Path) -> None:
    recorder = tape.Recorder(tmp_path, "p", "r1")
    recorder.record("GET", "http://h/getcrumb", 200, "OK", [], b"crumb-secret", secret=True)
    assert "crumb-secret" not in recorder.path.read_text()
    assert tape.load(tmp_path, "p").answer("GET", "http://h/getcrumb").body == b"REDACTED"  # type: ignore[union-attr]


def test_the_newest_recording_of_a_pipeline_is_replayed(tmp_path: Path) -> None:
    for recording, body in (("r1", b"old"), ("r2", b"new")):
        recorder = tape.Recorder(tmp_path, "p", recording)
        recorder.record("GET", "http://h/x", 200, "OK", [], body)
        lines = recorder.path.read_text().splitlines()
        header = json.loads(lines[0]) | {"started": f"2026-01-0{recording[-1]}T00:00:00+00:00"}
        recorder.path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert tape.load(tmp_path, "p").answer("GET", "http://h/x").body == b"new"  # type: ignore[union-attr]


SOURCE_ONLY = "queues: []\nworkers:\n  - {name: Source, location: fixture_workers, class: Source, input_values: [1]}\n"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "--offline {dir}: no such folder (record one with --record-http {dir})"),
        ("other", "no cassette of the pipeline 'mine' (cassettes there are of: theirs); record one with --record-http"),
        ("broken", "{dir}/mine.r1.jsonl:2: not a JSON line"),
        ("not-a-cassette", "{dir}/notes.jsonl:1: not a cassette"),
        ("both", "--record-http and --offline together"),
    ],
)
def test_a_folder_without_the_pipelines_cassette_is_a_configuration_error(
    tmp_path: Path, case: str, expected: str
) -> None:
    pipeline = tmp_path / "mine.yaml"
    pipeline.write_text(SOURCE_ONLY)
    folder = tmp_path / "cassettes"
    if case != "missing":
        tape.Recorder(folder, "theirs", "r1").record("GET", "http://h/x", 200, "OK", [], b"x")
    if case == "broken":
        (folder / "mine.r1.jsonl").write_text('{"cassette": 1, "pipeline": "mine"}\n{"url": \n')
    if case == "not-a-cassette":
        (folder / "notes.jsonl").write_text('{"some": "thing"}\n')
    args = ["--pipeline", str(pipeline), "--check", "--offline", str(folder)]
    if case == "both":
        args += ["--record-http", str(folder)]
    run = run_main(args, env={"DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"})
    assert run.returncode == 2, run.stdout + run.stderr
    assert expected.format(dir=folder) in (run.stdout + run.stderr)


DIALING = """\
import socket

from workers.base import Worker


class Dial(Worker):
    def process(self, item):
        socket.create_connection(("192.0.2.1", 80), timeout=3).close()  # TEST-NET-1: never a real machine
        return item
"""


@pytest.mark.parametrize("extra", ["", "processes: 1, "], ids=["threads", "processes"])
def test_offline_a_workers_own_connection_to_another_machine_is_refused(tmp_path: Path, extra: str) -> None:
    (tmp_path / "dialing.py").write_text(DIALING)
    pipeline = tmp_path / "dial.yaml"
    pipeline.write_text(
        "queues:\n  - {name: Items}\nworkers:\n"
        "  - {name: Source, location: fixture_workers, class: Source, input_values: [1, 2], output_queues: [Items]}\n"
        f"  - {{name: Dial, location: dialing, class: Dial, {extra}input_queue: Items}}\n"
    )
    tape.Recorder(tmp_path / "cassettes", "dial", "r1").record("GET", "http://h/x", 200, "OK", [], b"")
    stats = tmp_path / "stats.json"
    run = run_main(
        ["--pipeline", str(pipeline), "--offline", str(tmp_path / "cassettes"), "--quiet", "--stats-json", str(stats)],
        env={"DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    letters = dead_letters(stats)
    assert sorted(letter["item"] for letter in letters) == [1, 2]
    for letter in letters:
        assert "offline: no network: 192.0.2.1 is not this machine" in letter["error"], letter
