"""A local Yahoo that wants its session, as the real one does since 2025: a cookie from /fc (404 with Set-Cookie),
a crumb from /getcrumb only with that cookie, and a chart that answers 401 ("Invalid Crumb") without both. It can
rotate its crumb after some chart requests (the crumb expiring mid-run), refuse every crumb, answer the crumb with
"Too Many Requests", and give the `{"chart": null}` shapes for some symbols; it counts what it was asked."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sites import chart_body, price_for, quote_body

COOKIE = "A3=d=AQABBtest-cookie-value&S=AQAAAsecret"
INVALID_CRUMB = json.dumps(
    {"finance": {"result": None, "error": {"code": "Unauthorized", "description": "Invalid Crumb"}}}
)
NULL_SHAPES = {"NULLA": {"chart": None}, "NULLB": {"chart": {"result": None, "error": None}}}


class YahooWithSession:
    """The server; `rotate_after` chart requests the crumb changes; `refuse_all`: no crumb is ever good;
    `crumb_body`: what /getcrumb answers instead of a crumb."""

    def __init__(self, *, rotate_after: int = 0, refuse_all: bool = False, crumb_body: str | None = None) -> None:
        self.rotate_after, self.refuse_all, self.crumb_body = rotate_after, refuse_all, crumb_body
        self.counts: Counter[str] = Counter()
        self.charts: list[tuple[str | None, str | None]] = []  # (Cookie header, crumb) of each chart request
        self.crumb = "crumb-1"
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="yahoo-session-site", daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    @property
    def params(self) -> dict[str, str]:
        """The Yahoo stage's params for this server."""
        return {
            "chart_url": self.url("/v8/finance/chart/{symbol}"),
            "quote_url": self.url("/quote/{symbol}"),
            "cookie_url": self.url("/fc"),
            "crumb_url": self.url("/getcrumb"),
        }

    def answer(self, path: str, query: dict[str, list[str]], cookie: str | None) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            if path == "/fc":
                self.counts["cookie"] += 1
                return 404, {"Set-Cookie": f"{COOKIE}; Expires=Wed, 09 Dec 2027 00:00:00 GMT; Path=/; Secure"}, b"no"
            if path == "/getcrumb":
                self.counts["crumb"] += 1
                if cookie != COOKIE:
                    return 401, {}, b"no cookie"
                return 200, {}, (self.crumb_body if self.crumb_body is not None else self.crumb).encode()
            if path.startswith("/v8/finance/chart/"):
                symbol = unquote(path.rsplit("/", 1)[1])
                crumb = query.get("crumb", [None])[0]
                self.charts.append((cookie, crumb))
                self.counts["chart"] += 1
                if self.rotate_after and self.counts["chart"] == self.rotate_after:
                    self.crumb = "crumb-2"  # the old one expires now
                if self.refuse_all or cookie != COOKIE or crumb != self.crumb:
                    return 401, {}, INVALID_CRUMB.encode()
                if symbol in NULL_SHAPES:
                    return 200, {}, json.dumps(NULL_SHAPES[symbol]).encode()
                return 200, {}, chart_body(symbol, price_for(symbol))
            if path.startswith("/quote/"):
                self.counts["quote"] += 1
                return 200, {"Content-Type": "text/html"}, quote_body(unquote(path.rsplit("/", 1)[1]))
            return 404, {}, b""

    def __enter__(self) -> YahooWithSession:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def _handler(site: YahooWithSession) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            status, headers, body = site.answer(parts.path, parse_qs(parts.query), self.headers.get("Cookie"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
