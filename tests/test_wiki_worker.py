"""The S&P 500 source stage: parsing the constituents table, and fetching it over HTTP."""

from __future__ import annotations

import asyncio
import inspect

import lxml.html
import pytest
from sites import SP500_PAGE, WIKI_PATH, FakeSites, Fault, StubGroup, peak_rss_growth_bytes

from core.http.client import HttpClient, HttpSettings
from workers.base import ItemError
from workers.wiki_worker import WikiWorker, WikiWorkerAsyncScheduler, WikiWorkerMasterScheduler, parse_constituents

ROWS = 503  # data rows of table#constituents in the saved page (see tests/fixtures/README.md)
WIKI_ABSOLUTE = "https://en.wikipedia.org/wiki/"
FAST = HttpSettings(user_agent="wiki-worker-tests", retries=1, backoff_s=0.01)


@pytest.fixture(scope="module")
def browser_page() -> bytes:
    """The page as a browser saved it: header row in <thead>, absolute /wiki/ links."""
    return SP500_PAGE.read_bytes()


@pytest.fixture(scope="module")
def browser_symbols(browser_page: bytes) -> list[str]:
    return parse_constituents(browser_page)


def server_style(page: bytes) -> bytes:
    """The saved page rewritten the way Wikipedia's servers send it (header row in <tbody>, relative
    /wiki/ links) plus newer server markup (ids on rows and cells, rel="mw:ExtLink nofollow" links)."""
    doc = lxml.html.document_fromstring(page)
    table = doc.get_element_by_id("constituents")
    thead = table.find("thead")
    header = thead.find("tr")
    table.remove(thead)
    for cell in header.findall("th"):
        for attribute in ("class", "tabindex", "role", "title"):  # added by the browser's table sorter
            cell.attrib.pop(attribute, None)
    table.find("tbody").insert(0, header)
    tfoot = table.find("tfoot")
    if tfoot is not None:
        table.remove(tfoot)
    table.set("class", table.get("class").replace(" jquery-tablesorter", ""))
    for number, element in enumerate(table.iter("tr", "th", "td")):
        element.set("id", f"mw{number:X}")
    for link in doc.iter("a"):
        href = link.get("href", "")
        if href.startswith(WIKI_ABSOLUTE):
            link.set("href", "/wiki/" + href[len(WIKI_ABSOLUTE) :])
        if link.get("class") == "external text":
            del link.attrib["class"]
            link.set("rel", "mw:ExtLink nofollow")
    return lxml.html.tostring(doc, encoding="utf-8", doctype="<!DOCTYPE html>")


def page(*tables: str, head: str = '<meta charset="utf-8">') -> str:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(tables)}</body></html>"


def constituents(*symbols: str, header_in_thead: bool = False) -> str:
    header = "<tr><th>Symbol</th><th>Security</th></tr>"
    rows = "".join(f"<tr><td>{symbol}</td><td>Company {n}</td></tr>" for n, symbol in enumerate(symbols))
    if header_in_thead:
        return f'<table id="constituents"><thead>{header}</thead><tbody>{rows}</tbody></table>'
    return f'<table id="constituents"><tbody>{header}{rows}</tbody></table>'


# --- parse_constituents on the saved page -------------------------------------------------------


def test_browser_copy_gives_all_503_symbols(browser_symbols: list[str]) -> None:
    assert len(browser_symbols) == ROWS
    assert len(set(browser_symbols)) == ROWS
    assert browser_symbols[0] == "MMM"
    assert browser_symbols[-1] == "ZTS"
    assert {"BRK.B", "BF.B", "AAPL", "MSFT"} <= set(browser_symbols)


def test_browser_copy_has_no_header_text_or_blank_symbols(browser_symbols: list[str]) -> None:
    assert not {"Symbol", "Security", "GICS Sector", "CIK"} & set(browser_symbols)
    assert all(symbol and symbol == symbol.strip() and " " not in symbol for symbol in browser_symbols)


def test_server_style_variant_gives_the_same_symbols_in_the_same_order(
    browser_page: bytes, browser_symbols: list[str]
) -> None:
    variant = server_style(browser_page)

    # The variant really has the server's shape, so the parser is tested on something different.
    table = lxml.html.document_fromstring(variant).get_element_by_id("constituents")
    assert table.find("thead") is None
    first_row = table.find("tbody").find("tr")
    assert [cell.tag for cell in first_row] == ["th"] * 8
    assert first_row[0].text_content().strip() == "Symbol"
    assert first_row.get("id") and first_row[0].get("id")
    data_row = table.find("tbody").findall("tr")[1]
    assert data_row.get("id") and data_row[0].get("id")
    symbol_link = data_row[0].find("a")
    assert symbol_link.get("rel") == "mw:ExtLink nofollow" and symbol_link.get("class") is None
    hrefs = [a.get("href") for a in table.iter("a")]
    assert any(href.startswith("/wiki/") for href in hrefs)
    assert not any(href.startswith(WIKI_ABSOLUTE) for href in hrefs)
    table_html = lxml.html.tostring(table, encoding="unicode")
    assert WIKI_ABSOLUTE not in table_html and 'class="external text"' not in table_html
    assert table_html.count('rel="mw:ExtLink nofollow"') >= ROWS

    assert parse_constituents(variant) == browser_symbols


def test_server_style_variant_as_text_gives_the_same_symbols(browser_page: bytes, browser_symbols: list[str]) -> None:
    assert parse_constituents(server_style(browser_page).decode("utf-8")) == browser_symbols


# --- parse_constituents on small pages -----------------------------------------------------------


def test_page_without_the_constituents_table_raises_item_error() -> None:
    other = '<table id="changes"><tr><th>Symbol</th></tr><tr><td>MMM</td></tr></table>'
    with pytest.raises(ItemError, match="constituents"):
        parse_constituents(page(other))


def test_empty_page_raises_item_error() -> None:
    with pytest.raises(ItemError):
        parse_constituents(b"")


def test_table_before_the_constituents_table_is_ignored() -> None:
    decoy = (
        '<table class="wikitable" id="changes"><tr><th>Date</th></tr>'
        "<tr><td>DECOY</td></tr><tr><td>MMM</td></tr></table>"
    )
    assert parse_constituents(page(decoy, constituents("AOS", "MMM"))) == ["AOS", "MMM"]


@pytest.mark.parametrize("header_in_thead", [True, False], ids=["thead", "tbody"])
def test_header_row_is_skipped_wherever_it_is(header_in_thead: bool) -> None:
    html = page(constituents("MMM", "AOS", header_in_thead=header_in_thead))
    assert parse_constituents(html) == ["MMM", "AOS"]


def test_rows_without_tbody_are_read() -> None:
    html = page('<table id="constituents"><tr><th>Symbol</th></tr><tr><td>MMM</td></tr><tr><td>AOS</td></tr></table>')
    assert parse_constituents(html) == ["MMM", "AOS"]


@pytest.mark.parametrize(
    "cell",
    [
        "\n BRK.B \n",
        "&nbsp;BRK.B&nbsp;",
        "\u00a0BRK.B\u00a0",
        '<a rel="nofollow" href="x"> BRK.B</a>\n',
    ],
    ids=["spaces-newlines", "nbsp-entity", "nbsp-char", "link"],
)
def test_whitespace_and_nbsp_around_a_symbol_are_stripped(cell: str) -> None:
    assert parse_constituents(page(constituents(cell, "MMM"))) == ["BRK.B", "MMM"]


def test_raw_utf8_nbsp_is_stripped_when_the_page_declares_its_charset() -> None:
    html = page(constituents("\u00a0BRK.B\u00a0")).encode("utf-8")
    assert parse_constituents(html) == ["BRK.B"]


def test_duplicate_symbols_are_kept_once_in_first_seen_order() -> None:
    assert parse_constituents(page(constituents("MMM", "AOS", "MMM", "ABT", "AOS"))) == ["MMM", "AOS", "ABT"]


def test_empty_symbol_cells_are_skipped() -> None:
    assert parse_constituents(page(constituents("MMM", " ", "&nbsp;", "AOS"))) == ["MMM", "AOS"]


# --- WikiWorker over HTTP (a real server on 127.0.0.1) -------------------------------------------


@pytest.fixture
def http():
    client = HttpClient(FAST)
    yield client
    client.close()


@pytest.mark.parametrize("shape", ["browser", "server"])
def test_wiki_worker_gets_503_symbols_over_http(
    shape: str, browser_page: bytes, browser_symbols: list[str], http: HttpClient
) -> None:
    body = browser_page if shape == "browser" else server_style(browser_page)
    with FakeSites(page=body) as sites:
        symbols = WikiWorker(http).get_sp_500_companies(sites.wiki_url)
        assert sites.hits[WIKI_PATH] == 1
    assert symbols == browser_symbols
    assert len(symbols) == ROWS


def test_wiki_worker_non_200_raises_item_error(sites: FakeSites, http: HttpClient) -> None:
    sites.script(WIKI_PATH, Fault(403, b"Please set a user-agent"))
    with pytest.raises(ItemError, match="HTTP 403") as caught:
        WikiWorker(http).get_sp_500_companies(sites.wiki_url)
    assert caught.value.attempts == 1
    assert sites.hits[WIKI_PATH] == 1


def test_wiki_worker_retries_a_503_then_raises_item_error(sites: FakeSites, http: HttpClient) -> None:
    sites.script(WIKI_PATH, Fault(503), Fault(503))
    with pytest.raises(ItemError, match="HTTP 503") as caught:
        WikiWorker(http).get_sp_500_companies(sites.wiki_url)
    assert sites.hits[WIKI_PATH] == 2
    assert caught.value.attempts == 2


def test_wiki_worker_recovers_after_one_503(sites: FakeSites, http: HttpClient) -> None:
    sites.script(WIKI_PATH, Fault(503))
    assert len(WikiWorker(http).get_sp_500_companies(sites.wiki_url)) == ROWS
    assert sites.hits[WIKI_PATH] == 2


def test_wiki_worker_uses_the_charset_the_server_declares(http: HttpClient) -> None:
    body = page(constituents("\u00a0BRK.B\u00a0", "MMM"), head="<title>S&amp;P 500</title>").encode("utf-8")
    with FakeSites(page=body) as sites:  # serves text/html; charset=UTF-8
        symbols = WikiWorker(http).get_sp_500_companies(sites.wiki_url)
    assert symbols == ["BRK.B", "MMM"]


# --- the sources: WikiWorkerMasterScheduler (threads, requests) and WikiWorkerAsyncScheduler (asyncio, aiohttp) ---


@pytest.fixture(params=[WikiWorkerMasterScheduler, WikiWorkerAsyncScheduler])
def make_scheduler(request):
    """Builds a source of each kind in a StubGroup of its own (no runner); closes every group's client afterwards."""
    workers: list = []

    def make(**params):
        worker = request.param(group=StubGroup("wiki"), retries=1, backoff_s=0.01, **params)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        if not isinstance(worker, WikiWorkerAsyncScheduler):  # the async one closed its client in its loop
            worker.group.close()


def process(worker, url: str, *, first_only: bool = False) -> list[str]:
    """What process(url) yields (only its first symbol with first_only), for either kind of source."""
    if not inspect.isasyncgenfunction(worker.process):
        symbols = worker.process(url)
        return [next(symbols)] if first_only else list(symbols)

    async def collect() -> list[str]:
        try:
            symbols = worker.process(url)
            return [await symbols.__anext__()] if first_only else [symbol async for symbol in symbols]
        finally:
            await worker.aio_http.aclose()

    return asyncio.run(collect())


def test_scheduler_sends_the_descriptive_default_user_agent(sites: FakeSites, make_scheduler, monkeypatch) -> None:
    monkeypatch.delenv("WIKIPEDIA_USER_AGENT", raising=False)
    symbols = process(make_scheduler(), sites.wiki_url)
    assert len(symbols) == ROWS
    agent = sites.user_agents[WIKI_PATH]
    assert "yaml-pipeline-runner" in agent
    assert agent == WikiWorkerMasterScheduler.DEFAULT_USER_AGENT


def test_scheduler_sends_wikipedia_user_agent_from_the_environment(
    sites: FakeSites, make_scheduler, monkeypatch
) -> None:
    monkeypatch.setenv("WIKIPEDIA_USER_AGENT", "sp500-bot/2.0 (ops@example.org)")
    assert len(process(make_scheduler(), sites.wiki_url)) == ROWS
    assert sites.user_agents[WIKI_PATH] == "sp500-bot/2.0 (ops@example.org)"


def test_scheduler_min_symbols_at_the_page_count_passes(sites: FakeSites, make_scheduler) -> None:
    worker = make_scheduler(min_symbols=ROWS)
    assert process(worker, sites.wiki_url) == parse_constituents(SP500_PAGE.read_bytes())


def test_scheduler_min_symbols_above_the_page_count_raises_item_error(sites: FakeSites, make_scheduler) -> None:
    worker = make_scheduler(min_symbols=ROWS + 1)
    with pytest.raises(ItemError, match=f"parsed {ROWS} symbols.*min_symbols={ROWS + 1}"):
        process(worker, sites.wiki_url, first_only=True)  # before the first symbol: a short page sends none on


def test_scheduler_non_200_raises_item_error(sites: FakeSites, make_scheduler) -> None:
    sites.script(WIKI_PATH, Fault(404, b"no such page"))
    with pytest.raises(ItemError, match="HTTP 404"):
        process(make_scheduler(), sites.wiki_url)


def test_schedulers_use_the_charset_the_server_declares(make_scheduler) -> None:
    body = page(constituents("\u00a0BRK.B\u00a0", "MMM"), head="<title>S&amp;P 500</title>").encode("utf-8")
    with FakeSites(page=body) as sites:  # serves text/html; charset=UTF-8
        assert process(make_scheduler(), sites.wiki_url) == ["BRK.B", "MMM"]


def test_schedulers_retry_a_503(sites: FakeSites, make_scheduler) -> None:
    sites.script(WIKI_PATH, Fault(503))
    assert len(process(make_scheduler(), sites.wiki_url)) == ROWS
    assert sites.hits[WIKI_PATH] == 2


# --- max_body_bytes -------------------------------------------------------------------------------------------

MIB = 1024 * 1024


def test_the_default_max_body_bytes_holds_the_real_page_many_times_over(browser_page: bytes) -> None:
    assert HttpSettings(user_agent="x").max_body_bytes == 8 * MIB
    assert len(browser_page) == 1_051_515  # 1.0 MiB: the default holds it 7.9 times over
    assert WikiWorkerMasterScheduler(group=StubGroup("wiki")).http_settings.max_body_bytes == 8 * MIB


def test_a_page_past_max_body_bytes_fails_its_item(sites: FakeSites, make_scheduler, browser_page: bytes) -> None:
    with pytest.raises(
        ItemError,
        match=f"larger than max_body_bytes={len(browser_page) - 1} "
        rf"\(Content-Length: {len(browser_page)}\)",
    ):
        process(make_scheduler(max_body_bytes=len(browser_page) - 1), sites.wiki_url)
    assert sites.hits[WIKI_PATH] == 1
    assert len(process(make_scheduler(max_body_bytes=len(browser_page)), sites.wiki_url)) == ROWS


def test_an_endless_page_fails_its_item_in_bounded_memory(sites: FakeSites, make_scheduler) -> None:
    # 512 MiB offered as fast as it is read; read_timeout_s long enough to take all of it were nothing to stop it.
    sites.always(WIKI_PATH, Fault(action="endless"))
    worker = make_scheduler(max_body_bytes=2 * MIB, read_timeout_s=30)
    caught: list[BaseException] = []

    def run() -> None:
        with pytest.raises(ItemError) as error:
            process(worker, sites.wiki_url)
        caught.append(error.value)

    growth = peak_rss_growth_bytes(run)
    assert sites.stream_ended.wait(10), "the server is still sending"

    assert "larger than max_body_bytes=2097152 (more than 2097152 bytes arrived)" in str(caught[0])
    assert sites.hits[WIKI_PATH] == 1
    assert growth < 24 * MIB, f"resident memory rose {growth / MIB:.0f} MiB"
    assert sites.sent_bytes[WIKI_PATH] < 32 * MIB  # what the socket buffers took before the client hung up
