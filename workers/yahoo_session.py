"""Yahoo's session, as maintained clients take it since 2025: a cookie from `cookie_url` (https://fc.yahoo.com
answers 404 with Set-Cookie), then a crumb from `crumb_url` sent with that cookie; each chart request then carries
the cookie and `crumb=`. Without them Yahoo answers 429 or 401 ("Invalid Crumb").

One session per group (per process with worker processes), taken when the first item needs it and shared by
every instance; taken again once when a chart answer refuses the crumb (401), not per item and never in a loop:
a new crumb refused within RENEW_COOLDOWN_S of the last renewal, or a session that cannot be had, leaves the
stage going on without one (the chart as before, then the quote page) until the cooldown has passed, said once in
the log. The cookie and crumb are kept in memory only and never logged or dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import quote

from core.http.policy import Page
from workers.base import ItemError

logger = logging.getLogger(__name__)

COOKIE_URL = "https://fc.yahoo.com"
CRUMB_URL = "https://query1.finance.yahoo.com/v1/test/getcrumb"
SESSION = "session"  # the endpoint (pacer and breaker) the session's requests go through
RENEW_COOLDOWN_S = 300.0
MAX_CRUMB_CHARS = 64  # a crumb is about 11 characters; an HTML page or an error text is not one


class CrumbRefused(ItemError):
    """The chart answered 401: the crumb of session `generation` is not (or no longer) valid."""

    def __init__(self, message: str, *, generation: int, attempts: int = 1) -> None:
        super().__init__(message, attempts=attempts)
        self.generation = generation


@dataclass(frozen=True)
class Want:
    """A GET the session needs made, with the headers to send."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    secret: bool = False  # the answer is a token: --record-http keeps "REDACTED" in its place


class YahooSession:
    """The group's cookie and crumb; `taking()` is the I/O-free way to (re)take them, run under `lock`."""

    def __init__(self, cookie_url: str, crumb_url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cookie_url, self.crumb_url, self.clock = cookie_url, crumb_url, clock
        self.cookie: str | None = None
        self.crumb: str | None = None
        self.generation = 0  # how many times it was taken: a refusal of an older crumb asks for nothing new
        self.lock = threading.Lock()  # for the threads of a group; the asyncio stage also takes its own lock
        self.async_lock: Any = None  # asyncio.Lock, made on the group's loop when first needed
        self._taken_at: float | None = None
        self._without_until = 0.0  # going on without a session until then
        self._worked = 0  # the last generation whose crumb a chart request was answered with
        self._retaken = False  # the current crumb was taken because the one before was refused
        self._said = False

    def needs_taking(self, refused_generation: int | None = None) -> bool:
        """Whether a (re)take is due now: never taken; or `refused_generation`, the current one, was refused."""
        if self.clock() < self._without_until:
            return False
        if refused_generation is None:
            return self._taken_at is None or self._without_until > 0  # never taken, or its cooldown has passed
        return refused_generation == self.generation

    def worked(self, generation: int) -> None:
        """A chart request with the crumb of `generation` was answered: that crumb was good."""
        self._worked = max(self._worked, generation)

    def taking(self, refused: bool = False) -> Generator[Want, Page | Exception, None]:
        """Take a cookie and a crumb: yields each GET, is sent its Page (or the error it ended in)."""
        try:
            if refused and self._worked < self.generation and self._retaken:  # taken again, and never good either
                self._go_without("the chart refused a crumb taken again after a refusal")
                return
            self._retaken = refused
            yield from self._take()
        finally:
            self._taken_at = self.clock()  # from here, instances waiting on the lock go on with what it gave

    def _take(self) -> Generator[Want, Page | Exception, None]:
        # The old cookie and crumb stay in use until the new ones replace them, generation and all at once: an
        # item that meets a refusal meanwhile waits on the lock, then goes on with the new ones.
        answer = yield Want(self.cookie_url)
        cookie = _cookie_header(answer) if isinstance(answer, Page) else None
        if not cookie:
            self._go_without(f"no cookie from {self.cookie_url} ({_why(answer)})")
            return
        answer = yield Want(self.crumb_url, {"Cookie": cookie}, secret=True)
        crumb = _crumb(answer)
        if crumb is None:
            self._go_without(f"no crumb from {self.crumb_url} ({_why(answer)})")
            return
        self.cookie, self.crumb, self.generation = cookie, crumb, self.generation + 1
        self._without_until = 0.0
        logger.info("Yahoo session taken (cookie and crumb; not shown)")

    def headers(self) -> dict[str, str]:
        """The headers of a chart request: the cookie, when there is a session."""
        return {"Cookie": self.cookie} if self.cookie and self.crumb else {}

    def chart_url(self, url: str) -> str:
        """`url` with the crumb, when there is a session."""
        if not (self.cookie and self.crumb):
            return url
        return f"{url}{'&' if '?' in url else '?'}crumb={quote(self.crumb, safe='')}"

    def _go_without(self, why: str) -> None:
        self.cookie = self.crumb = None
        self._without_until = self.clock() + RENEW_COOLDOWN_S
        if not self._said:
            self._said = True
            logger.warning(
                "Yahoo session: %s; going on without cookie and crumb (the chart, then the quote page), "
                "trying again in %.0f s",
                why,
                RENEW_COOLDOWN_S,
            )


def take(session: YahooSession, refused: int | None, run: Callable[[Generator[Want, Any, None]], None]) -> None:
    """Take (or after a refusal of generation `refused`, retake) the session if that is due, one thread at a time;
    `run` drives its GETs (the lookup's driver, through fetches())."""
    if refused is None and not session.needs_taking(None):
        return  # the usual case, without the lock; after a refusal the lock is waited for (a retake may be going on)
    with session.lock:
        if session.needs_taking(refused):  # not done meanwhile by another instance
            run(session.taking(refused is not None))


async def take_async(
    session: YahooSession, refused: int | None, run: Callable[[Generator[Want, Any, None]], Awaitable[None]]
) -> None:
    """take() for the asyncio stage: one task at a time on the group's loop."""
    if refused is None and not session.needs_taking(None):
        return
    if session.async_lock is None:
        import asyncio  # here: a threads-only run never loads asyncio

        session.async_lock = asyncio.Lock()
    async with session.async_lock:
        if session.needs_taking(refused):
            await run(session.taking(refused is not None))


def _cookie_header(page: Page) -> str | None:
    """The cookies a response set, as a Cookie header's value."""
    headers: Any = page.headers
    values = (
        headers.getall("Set-Cookie", [])
        if hasattr(headers, "getall")
        else headers.getlist("Set-Cookie")
        if hasattr(headers, "getlist")
        else [headers.get("Set-Cookie")] if headers.get("Set-Cookie") else []
    )  # fmt: skip
    pairs = []
    for value in values:
        try:
            jar = SimpleCookie(value)
        except CookieError:
            continue
        pairs += [f"{name}={morsel.value}" for name, morsel in jar.items()]
    return "; ".join(pairs) or None


def _crumb(answer: Page | Exception) -> str | None:
    """The crumb in the answer, or None: a 429 (or a body saying "Too Many Requests"), an error, an HTML page."""
    if not isinstance(answer, Page) or answer.status != 200:
        return None
    text = answer.body.decode("utf-8", "replace").strip()
    if not text or len(text) > MAX_CRUMB_CHARS or "<" in text or "too many requests" in text.lower():
        return None
    return text


def _why(answer: Page | Exception | None) -> str:
    """Why an answer gave no cookie or crumb (its text, which is then no secret, cut short)."""
    if isinstance(answer, Page):
        text = " ".join(answer.body[:80].decode("utf-8", "replace").split())
        return f"HTTP {answer.status}" + (f": {text}" if text else "")
    return f"{type(answer).__name__}: {answer}" if answer is not None else "no answer"
