"""What both Yahoo stages (threads and asyncio) take and check: the chart and quote-page URL templates, Yahoo's
session (cookie_url, crumb_url: workers/yahoo_session.py), and the User-Agent Yahoo is sent."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from workers.yahoo_pages import CHART_URL, QUOTE_URL, template_problem
from workers.yahoo_session import COOKIE_URL, CRUMB_URL, YahooSession


class YahooParams:
    """What both Yahoo stages take and check: the two URL templates, and Yahoo's User-Agent."""

    USER_AGENT_ENV = "YAHOO_USER_AGENT"
    # Yahoo throttles library-default agents at once; a browser's agent is what its own pages send.
    DEFAULT_USER_AGENT = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
    )

    def __init__(
        self,
        *,
        chart_url: str = CHART_URL,
        quote_url: str = QUOTE_URL,
        cookie_url: str | None = None,
        crumb_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.chart_url = chart_url
        self.quote_url = quote_url
        # Yahoo's session for Yahoo's chart API; a chart_url of another host (a mirror, a test server) takes one
        # only where cookie_url and crumb_url are given.
        yahoo = urlsplit(chart_url).hostname == urlsplit(CHART_URL).hostname
        self.cookie_url = cookie_url or (COOKIE_URL if yahoo else None)
        self.crumb_url = crumb_url or (CRUMB_URL if yahoo else None)

    def yahoo_session(self) -> YahooSession | None:
        """The group's session (made once for all its instances), or None when it takes none."""
        if not (self.cookie_url and self.crumb_url):
            return None
        cookie_url, crumb_url = self.cookie_url, self.crumb_url
        return self.group.resource("yahoo-session", lambda: YahooSession(cookie_url, crumb_url))  # type: ignore[attr-defined]

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        """The HTTP params' problems, and each URL template that is not one with exactly {symbol}."""
        problems = list(super().check_params(params))  # type: ignore[misc]
        for key in ("chart_url", "quote_url"):
            value = params.get(key)
            problem = template_problem(value) if isinstance(value, str) else None
            if problem:
                problems.append((key, problem))
        for key in ("cookie_url", "crumb_url"):
            value = params.get(key)
            if value is not None and not (isinstance(value, str) and urlsplit(value).scheme in ("http", "https")):
                problems.append((key, f"must be an http:// or https:// URL, got {value!r}"))
        if bool(params.get("cookie_url")) != bool(params.get("crumb_url")):
            problems.append(("cookie_url", "cookie_url and crumb_url go together: give both, or neither"))
        return problems
