"""Source stage: the S&P 500 symbols from Wikipedia's constituents table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from workers.base import ItemError
from workers.http_worker import AsyncHttpWorker, HttpWorker

if TYPE_CHECKING:
    import lxml.html

    from core.http.client import HttpClient

logger = logging.getLogger(__name__)

TABLE_ID = "constituents"


def parse_constituents(html: str | bytes, parser: lxml.html.HTMLParser | None = None) -> list[str]:
    """Symbols from the first cell of each data row of table#constituents, in page order, once each.

    The header row may sit in <thead> (browser copies) or be the first <tbody> row (the HTML the
    server sends); either way it is made of <th> cells, so a data row is one that starts with <td>.
    """
    if not html.strip():
        raise ItemError("the page is empty")
    import lxml.html  # here, not at the top: --check need not load lxml

    tables = lxml.html.fromstring(html, parser=parser).xpath(f'//table[@id="{TABLE_ID}"]')
    if not tables:
        raise ItemError(f"no table with id {TABLE_ID!r} on the page")
    symbols: dict[str, None] = {}
    for row in tables[0].xpath("./tr | ./thead/tr | ./tbody/tr"):
        cells = row.xpath("./td | ./th")
        if cells and cells[0].tag == "td":
            symbol = " ".join(cells[0].text_content().split())
            if symbol:
                symbols.setdefault(symbol, None)
    return list(symbols)


def symbols_from(url: str, status: int, body: bytes, content_type: str, attempts: int = 1) -> list[str]:
    """The symbols of a fetched page; ItemError unless it answered 200. A charset the server declares
    (Content-Type) is trusted; without one lxml reads the page's own <meta charset>."""
    if status != 200:
        raise ItemError(f"GET {url} answered HTTP {status}", attempts=attempts)
    charset = content_type.lower().partition("charset=")[2].split(";")[0].strip().strip("\"'")
    parser = None
    if charset:
        import lxml.html

        parser = lxml.html.HTMLParser(encoding=charset)
    return parse_constituents(body, parser)


class WikiWorker:
    """Fetches a Wikipedia page and parses the S&P 500 symbols out of it."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    def get_sp_500_companies(self, url: str) -> list[str]:
        """The symbols on the page at `url`."""
        response = self.http.get(url)
        attempts = response.attempts  # type: ignore[attr-defined]  # set by core.http.client
        return symbols_from(
            url, response.status_code, response.content, response.headers.get("Content-Type", ""), attempts
        )


class _WikiParams:
    """What both sources share: the User-Agent Wikimedia asks for, and the min_symbols check."""

    name: str  # the worker's (a Worker mixin)

    USER_AGENT_ENV = "WIKIPEDIA_USER_AGENT"
    # Wikimedia answers 403 to library-default agents and asks for a name and a way to reach you.
    DEFAULT_USER_AGENT = (
        "yaml-pipeline-runner/1.0 (S&P 500 price collector; "
        "set WIKIPEDIA_USER_AGENT to add your contact) python-requests"
    )

    def __init__(self, *, min_symbols: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_symbols = min_symbols

    def checked(self, url: str, symbols: list[str]) -> list[str]:
        """The whole list, once it has passed its check: a short page sends nothing on."""
        if len(symbols) < self.min_symbols:
            raise ItemError(
                f"{url}: parsed {len(symbols)} symbols, fewer than min_symbols={self.min_symbols}; "
                "the page layout may have changed, so no symbol is sent on"
            )
        logger.info("%s: %d symbols from %s", self.name, len(symbols), url)
        return symbols


class WikiWorkerMasterScheduler(_WikiParams, HttpWorker):
    """Source: for each URL in input_values, emits every symbol of the page's constituents table."""

    preload = (*HttpWorker.preload, "lxml.html")

    def process(self, url: str) -> Iterator[str]:
        """Every symbol on the page at `url`, once the page has passed its checks."""
        yield from self.checked(url, WikiWorker(self.http).get_sp_500_companies(url))


class WikiWorkerAsyncScheduler(_WikiParams, AsyncHttpWorker):
    """The same source on asyncio (aiohttp, same params and policy). With the asyncio Yahoo stage, a run then
    never loads requests, the blocking client's library: about 0.04 CPU-s less per run."""

    preload = (*AsyncHttpWorker.preload, "lxml.html")

    async def process(self, url: str) -> AsyncIterator[str]:
        page = await self.aio_http.get(url)
        symbols = symbols_from(url, page.status, page.body, page.headers.get("Content-Type", ""), page.attempts)
        for symbol in self.checked(url, symbols):
            yield symbol
