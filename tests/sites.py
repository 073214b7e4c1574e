"""A local stand-in for Wikipedia and Yahoo Finance on 127.0.0.1, serving the saved pages.

Every symbol gets a chart response shaped like Yahoo's real one with a price derived from the
symbol, so a test can check each stored row. Scripted faults (status codes, hangs, cut bodies)
can be queued per path for the reliability tests, or set to answer every request to a path
(`always`); `requests` records when each request arrived. `StubGroup` is what a worker sees of its
group, for unit tests that call process() without a runner.
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

FIXTURES = Path(__file__).parent / "fixtures"
SP500_PAGE = FIXTURES / "wikipedia" / "sp500_2025-07-18_browser_saved.html"
CHART_TEMPLATE = FIXTURES / "yahoo" / "yahoo_chart_AAPL_2024-09-18_1wk.json"
NOT_FOUND_BODY = (FIXTURES / "yahoo" / "yahoo_chart_error_not_found.json").read_bytes()
MARKET_TIME = 1726689602  # the template's regularMarketTime, 2024-09-18 20:00:02 UTC
WIKI_PATH = "/wiki/List_of_S%26P_500_companies"


def price_for(symbol: str) -> float:
    """The price the fake Yahoo serves for `symbol`: stable, distinct enough, always > 0."""
    return round(10 + (zlib.crc32(symbol.encode()) % 500_000) / 100, 2)


@functools.lru_cache(maxsize=4096)
def chart_body(symbol: str, price: float | None, currency: str | None = "USD", market_time: int = MARKET_TIME) -> bytes:
    """A real chart payload with its meta rewritten for `symbol` (made once: the benchmarks time this server)."""
    payload = json.loads(CHART_TEMPLATE.read_text())
    meta = payload["chart"]["result"][0]["meta"]
    meta.update(symbol=symbol, regularMarketPrice=price, currency=currency, regularMarketTime=market_time)
    return json.dumps(payload).encode()


def quote_body(symbol: str, price: float | None = None) -> bytes:
    """A quote page's price markup (era 2: fin-streamer with data-symbol and data-value) for `symbol`."""
    price = price_for(symbol) if price is None else price
    return (
        f'<fin-streamer data-symbol="{symbol}" data-testid="qsp-price" data-field="regularMarketPrice" '
        f'data-value="{price}"><span>{price:,.2f}</span></fin-streamer>'
    ).encode()


def peak_rss_growth_bytes(action: Callable[[], Any]) -> int:
    """How far this process's resident memory rose above its size at the start while `action()` ran (its peak,
    VmHWM, reset first through /proc/self/clear_refs)."""

    def status_kib(field: str) -> int:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
        return int(line.split()[1])

    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS:")
    action()
    return (status_kib("VmHWM:") - before) * 1024


class StubGroup:
    """What a worker sees of its group (name, spec.instances, stop, resource), without queues or a runner."""

    def __init__(self, name: str = "group", *, instances: int = 1, stop: threading.Event | None = None) -> None:
        self.name = name
        self.spec = SimpleNamespace(name=name, instances=instances)
        self.stop = stop or threading.Event()
        self.resources: dict[str, Any] = {}

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """The one object under `key`, made by `factory` on first use."""
        if key not in self.resources:
            self.resources[key] = factory()
        return self.resources[key]

    def close(self) -> None:
        """Close every resource, as WorkerGroup.close() does."""
        for resource in self.resources.values():
            resource.close()


class Fault:
    """One scripted answer: a status with headers and body, or an action (hang, cut, close, trickle,
    endless, oversize).

    "trickle" sends the status and headers, then the body one byte every `interval_s`, so that no
    single read waits long enough to time out while the whole answer takes as long as it likes.
    "endless" sends a chunked body of 64 KiB chunks as fast as the client takes them, until the client
    hangs up or `limit_bytes` went out; "oversize" promises `declared_length` bytes (Content-Length),
    sends `body` and then nothing more.
    """

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        action: str | None = None,
        delay_s: float = 0.0,
        interval_s: float = 0.5,
        limit_bytes: int = 512 * 1024 * 1024,
        declared_length: int = 0,
    ) -> None:
        self.status, self.body, self.headers, self.action, self.delay_s = status, body, headers or {}, action, delay_s
        self.interval_s = interval_s
        self.limit_bytes = limit_bytes
        self.declared_length = declared_length


class FakeSites:
    """The HTTP server; use as a context manager. `url(path)` gives an address on it."""

    def __init__(
        self,
        *,
        page: bytes | None = None,
        latency_s: float = 0.0,
        unknown: set[str] = frozenset(),
        zero_price: set[str] = frozenset(),
    ) -> None:
        self.page = page if page is not None else SP500_PAGE.read_bytes()
        self.latency_s = latency_s
        self.unknown = set(unknown)
        self.zero_price = set(zero_price)
        #: The regularMarketTime every chart carries (Unix seconds); a test may move it between runs.
        self.market_time = MARKET_TIME
        self.hits: Counter[str] = Counter()
        #: (time.monotonic() on arrival, path) of every request, in arrival order.
        self.requests: list[tuple[float, str]] = []
        self.user_agents: dict[str, str] = {}
        #: Body bytes each "endless" answer got out, per path; `stream_ended` is set as each one ends.
        self.sent_bytes: Counter[str] = Counter()
        self.stream_ended = threading.Event()
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._always: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()  # lets hanging handlers go when the server stops
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.sites = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.serve_forever, name="FakeSites", daemon=True)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server."""
        return self.base + path

    @property
    def wiki_url(self) -> str:
        return self.url(WIKI_PATH)

    @property
    def chart_url(self) -> str:
        return self.url("/v8/finance/chart/{symbol}")

    @property
    def quote_url(self) -> str:
        return self.url("/quote/{symbol}")

    def script(self, path: str, *faults: Fault) -> None:
        """Answer the next requests for `path` with `faults`, in order, then normally."""
        with self._lock:
            self._faults[path].extend(faults)

    def always(self, path: str, fault: Fault) -> None:
        """Answer every request for `path` with `fault` once the scripted ones are used up; a path
        ending in "/" covers every path under it (the longest such prefix wins)."""
        with self._lock:
            self._always[path] = fault

    def next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            if queue:
                return queue.popleft()
            if path in self._always:
                return self._always[path]
            prefixes = [p for p in self._always if p.endswith("/") and path.startswith(p)]
            return self._always[max(prefixes, key=len)] if prefixes else None

    def times(self, path: str) -> list[float]:
        """Arrival times (time.monotonic()) of the requests for exactly `path`."""
        with self._lock:
            return [at for at, seen in self.requests if seen == path]

    def requests_since(self, moment: float, prefixes: tuple[str, ...] = ("/",)) -> list[str]:
        """Paths starting with one of `prefixes` requested after `moment` (time.monotonic())."""
        with self._lock:
            return [path for at, path in self.requests if at > moment and path.startswith(prefixes)]

    def __enter__(self) -> FakeSites:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: with 16 or more clients connecting at once, the rest wait
    # for a SYN retry (a second or more), which would be charged to the client under test.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms to each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        sites: FakeSites = self.server.sites  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        with sites._lock:
            sites.hits[path] += 1
            sites.requests.append((time.monotonic(), path))
            sites.user_agents[path] = self.headers.get("User-Agent", "")
        fault = sites.next_fault(path)
        if fault is not None:
            return self._fault(fault, sites)
        if path == WIKI_PATH:
            return self._send(200, sites.page, "text/html; charset=UTF-8")
        if path.startswith("/v8/finance/chart/"):
            return self._chart(unquote(path.rsplit("/", 1)[1]), sites)
        if path.startswith("/quote/"):
            return self._send(200, quote_body(unquote(path.rsplit("/", 1)[1])), "text/html")
        self._send(404, b"not here", "text/plain")

    def _chart(self, symbol: str, sites: FakeSites) -> None:
        if symbol in sites.unknown:
            status, body = 404, NOT_FOUND_BODY
        elif symbol in sites.zero_price:
            status, body = 200, chart_body(symbol, 0.0, None)
        else:
            status, body = 200, chart_body(symbol, price_for(symbol), market_time=sites.market_time)
        if sites.latency_s:  # after the body is made, so the answer comes after the latency, not later
            time.sleep(sites.latency_s)
        self._send(status, body, "application/json")

    def _fault(self, fault: Fault, sites: FakeSites) -> None:
        if fault.delay_s:
            sites._release.wait(fault.delay_s)
        if fault.action == "hang":  # accept, read the request, never answer
            sites._release.wait(60)
            return
        if fault.action == "close":  # drop the connection without a word
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.action == "cut":  # promise a body, send half of it, hang up
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(fault.body)))
            self.end_headers()
            self.wfile.write(fault.body[: len(fault.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.action == "endless":
            return self._endless(fault, sites)
        if fault.action == "oversize":
            self.send_response(fault.status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(fault.declared_length))
            self.end_headers()
            self.wfile.write(fault.body)
            sites._release.wait(60)
            self.close_connection = True
            return
        if fault.action == "trickle":
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(fault.body)))
            self.end_headers()
            self.wfile.flush()
            for offset in range(len(fault.body)):
                if sites._release.wait(fault.interval_s):
                    return
                try:
                    self.wfile.write(fault.body[offset : offset + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    self.close_connection = True
                    return
            return
        self._send(fault.status, fault.body, "application/json", fault.headers)

    def _endless(self, fault: Fault, sites: FakeSites) -> None:
        path = self.path.split("?")[0]
        self.send_response(fault.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"<p>" + b"x" * (64 * 1024 - 7) + b"</p>"
        frame = b"%x\r\n%s\r\n" % (len(block), block)
        sent = 0
        try:
            while sent < fault.limit_bytes and not sites._release.is_set():
                self.wfile.write(frame)
                sent += len(block)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client hung up
            pass
        finally:
            self.close_connection = True
            with sites._lock:
                sites.sent_bytes[path] += sent
            sites.stream_ended.set()

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
