"""tests/sites.py's Wikipedia and Yahoo answers, served lean: an asyncio server in a process of its own.

    python bench/fast_sites.py [--latency 0.1] [--max-symbols 3521]     # prints its base URL, then serves

FakeSites (a thread per connection, http.server parsing the headers) spends about 0.5 ms of CPU per request
on the same 2 cores as the client it serves; at 256 requests in flight (2,560 requests/s at 100 ms) it
needs more than a core and would be what a benchmark measures. This server sends the same bytes (the saved
page, `chart_body`, `price_for`) for about a tenth of that, and bench scripts read its CPU from /proc.

Paths: /stats (connections and requests so far, as JSON); the saved S&P 500 page at tests/sites.py's WIKI_PATH; /synthetic/N, a constituents table of N
symbols (the page's 503, then fillers X0000, X0001, ...), for measuring CPU per request by the slope
between two sizes; /v8/finance/chart/SYMBOL, answered after `latency` seconds. Requests are GETs without
a body; a connection's requests are answered in order.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import lxml.html  # noqa: E402
from sites import SP500_PAGE, WIKI_PATH, chart_body, price_for  # noqa: E402

REQUEST_END = b"\r\n\r\n"


def sp500_symbols() -> list[str]:
    """The saved page's 503 symbols, in page order."""
    table = lxml.html.fromstring(SP500_PAGE.read_bytes()).xpath('//table[@id="constituents"]')[0]
    return [row.xpath("./td")[0].text_content().strip() for row in table.xpath(".//tr") if row.xpath("./td")]


def synthetic_symbols(count: int, real: list[str]) -> list[str]:
    """`count` symbols: the real ones first, then fillers."""
    return (real + [f"X{n:04d}" for n in range(max(count - len(real), 0))])[:count]


def synthetic_page(symbols: list[str]) -> bytes:
    """A constituents table (as parse_constituents reads it) with one row per symbol."""
    rows = "".join(f"<tr><td>{symbol}</td><td>Company</td></tr>" for symbol in symbols)
    return (
        f'<html><body><table id="constituents"><tr><th>Symbol</th><th>Security</th></tr>{rows}</table></body></html>'
    ).encode()


def response(status: int, body: bytes, content_type: str) -> bytes:
    """A whole HTTP/1.1 response, keep-alive."""
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Answers:
    """Every response, made before the clock starts, so the server's CPU per request stays small."""

    def __init__(self, max_symbols: int) -> None:
        real = sp500_symbols()
        self.pages = {unquote(WIKI_PATH): response(200, SP500_PAGE.read_bytes(), "text/html; charset=UTF-8")}
        self.charts: dict[str, bytes] = {}
        for symbol in synthetic_symbols(max_symbols, real):
            ticker = symbol.replace(".", "-")
            self.charts[ticker] = response(200, chart_body(ticker, price_for(ticker)), "application/json")
        self.real = real
        self.connections = self.requests = 0

    def get(self, path: str) -> bytes:
        self.requests += 1
        if path == "/stats":  # for the bench scripts: what was asked of the server so far
            self.requests -= 1
            body = f'{{"connections": {self.connections}, "requests": {self.requests}}}'.encode()
            return response(200, body, "application/json")
        if path.startswith("/v8/finance/chart/"):
            ticker = path.rsplit("/", 1)[1]
            answer = self.charts.get(ticker)
            if answer is None:  # not made in advance: make it now (slow once)
                answer = self.charts[ticker] = response(200, chart_body(ticker, price_for(ticker)), "application/json")
            return answer
        if path in self.pages:
            return self.pages[path]
        match = re.fullmatch(r"/synthetic/(\d+)", path)
        if match:
            page = response(200, synthetic_page(synthetic_symbols(int(match[1]), self.real)), "text/html")
            self.pages[path] = page
            return page
        return response(404, b"not here", "text/plain")


class Connection(asyncio.Protocol):
    """One client connection: each request is answered `latency_s` after it arrived, in order."""

    def __init__(self, answers: Answers, latency_s: float) -> None:
        self.answers = answers
        self.latency_s = latency_s
        self.buffer = b""
        self.busy = False  # a request is being answered; the next waits in the buffer (no pipelining needed)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.answers.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.next_request()

    def next_request(self) -> None:
        if self.busy or REQUEST_END not in self.buffer:
            return
        head, self.buffer = self.buffer.split(REQUEST_END, 1)
        path = unquote(head.split(b" ", 2)[1].decode().split("?")[0])  # clients differ in what they quote
        answer = self.answers.get(path)
        self.busy = True
        if path.startswith("/v8/finance/chart/") and self.latency_s:
            asyncio.get_running_loop().call_later(self.latency_s, self.send, answer)
        else:
            self.send(answer)

    def send(self, answer: bytes) -> None:
        self.busy = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self.next_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(latency_s: float, max_symbols: int) -> None:
    """Serve on a free port of 127.0.0.1, print its base URL, stop when stdin closes."""
    answers = Answers(max_symbols)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(answers, latency_s), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # serve until the parent closes our stdin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds before each chart answer")
    parser.add_argument("--max-symbols", type=int, default=3521, help="chart answers to make in advance")
    args = parser.parse_args()
    from core.base.descriptors import reserve

    reserve()  # before its stdin thread: the first run's burst of connections never waits for the table
    asyncio.run(serve(args.latency, args.max_symbols))


class FastSites:
    """Start the server in its own process (a context manager); `cpu_s()` is its CPU so far, from /proc."""

    def __init__(self, *, latency_s: float = 0.1, max_symbols: int = 3521) -> None:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, __file__, "--latency", str(latency_s), "--max-symbols", str(max_symbols)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base = self.process.stdout.readline().strip()
        if not self.base.startswith("http://"):
            raise RuntimeError(f"bench/fast_sites.py did not start: {self.base!r}")

    @property
    def wiki_url(self) -> str:
        return self.base + WIKI_PATH

    @property
    def chart_url(self) -> str:
        return self.base + "/v8/finance/chart/{symbol}"

    def synthetic_url(self, count: int) -> str:
        return f"{self.base}/synthetic/{count}"

    def counts(self) -> dict:
        """Connections accepted and requests answered so far."""
        import json
        import urllib.request

        with urllib.request.urlopen(self.base + "/stats", timeout=10) as answer:
            return json.loads(answer.read())

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far."""
        import os

        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> FastSites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stdin.close()
        self.process.wait(10)


if __name__ == "__main__":
    main()
