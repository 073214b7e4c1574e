"""How a worker group talks HTTP, without any I/O: when a request may start, how long to wait before it,
which answers are retried, and when an endpoint is left alone for a while.

The blocking client (core/http/client.py) and the asyncio client (core/http/aiohttp_client.py) both drive one
RequestPlan per GET: they ask `next_step()` what to do (wait, then send with these timeouts), do it,
and tell the plan what came back (`answered(status, retry_after)` or `failed(what)`). The plan keeps
the retry count and the backoff, honours Retry-After, respects the item's deadline and the group's
stop event, and records each outcome into its endpoint's breaker (core/http/endpoint.py). Endpoints are
named by the worker ("chart", "quote"), so a failing API and a healthy fallback page are paced and broken separately.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.base.errors import ItemError
from core.http.endpoint import Endpoint, Refused
from core.http.tape import OFFLINE_ENV

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The largest body a client reads (8 MiB): the S&P 500 page is 1.0 MiB, a chart answer about 2 KiB.
MAX_BODY_BYTES = 8 * 1024 * 1024
PROXY_VARS = tuple(
    name for upper in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY") for name in (upper, upper.lower())
)


def endpoint_of(url: str) -> str:
    """The default endpoint name of a URL: its host (and port)."""
    return urlsplit(url).netloc


def trust_env() -> bool:
    """Whether a client should read the environment on each request.

    With trust_env, requests reads ~/.netrc, the proxy variables and the CA bundle variables again on every
    request (a quarter of the client's CPU in a profile). Only the proxy rules (NO_PROXY) need that; a CA
    bundle is read once, when the session is made.
    """
    return any(os.environ.get(name) for name in PROXY_VARS)


@dataclass(frozen=True)
class HttpSettings:
    """How one worker group talks HTTP. Worst case for one request, every retry spent:
    (retries + 1) x (connect + 2 x read timeout: headers, then the whole body) + the waits between tries
    (each at most backoff_max_s, or retry_after_max_s when the server sent Retry-After); and never more
    than item_deadline_s for one item, fallbacks included. A body past max_body_bytes is not read on."""

    user_agent: str
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0
    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0
    retry_after_max_s: float = 30.0
    requests_per_second: float = 0.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    item_deadline_s: float = 60.0
    pool_size: int = 10
    max_body_bytes: int = MAX_BODY_BYTES


class FetchError(ItemError):
    """No usable answer: the connection failed, timed out or broke off, on every try."""


class CircuitOpen(ItemError):
    """Not sent: the endpoint failed too often or asked for a pause longer than the cap; the group waits it out."""


class DeadlineExceeded(ItemError):
    """Not sent: the item's deadline (item_deadline_s) leaves no time for another try."""


class BodyTooLarge(ItemError):
    """The answer's body is larger than max_body_bytes: not read on, and not retried (the same URL sends it again)."""


class Stopped(ItemError):
    """Not sent: the pipeline is stopping."""


@dataclass(frozen=True)
class Page:
    """An answer read in full: its status, headers and body, and how many tries it took."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    attempts: int = 1


@dataclass(frozen=True)
class Step:
    """What the client does next: wait `wait_s`, then send with these timeouts (or, if not `send`, ask again)."""

    wait_s: float
    send: bool = True
    connect_timeout_s: float = 0.0
    read_timeout_s: float = 0.0


def offline_replay() -> bool:
    """Whether this process answers HTTP from recorded answers (--offline)."""
    return bool(os.environ.get(OFFLINE_ENV))


class HttpPolicy:
    """A group's HTTP policy: its settings, one Endpoint per name, the stop event and the clocks."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.clock = clock
        self.wall_clock = wall_clock
        self._endpoints: dict[str, Endpoint] = {}
        self._lock = threading.Lock()

    def endpoint(self, name: str) -> Endpoint:
        """The Endpoint called `name`, made on first use."""
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            with self._lock:
                endpoint = self._endpoints.setdefault(
                    name,
                    Endpoint(
                        name,
                        # the rate spares the site; offline there is none to spare (a Retry-After still counts)
                        requests_per_second=0.0 if offline_replay() else self.settings.requests_per_second,
                        breaker_failures=self.settings.breaker_failures,
                        breaker_cooldown_s=self.settings.breaker_cooldown_s,
                    ),
                )
        return endpoint

    def deadline(self) -> float:
        """The deadline of an item that starts now (on `clock`)."""
        return self.clock() + self.settings.item_deadline_s

    def plan(self, url: str, *, endpoint: str, deadline: float | None = None) -> RequestPlan:
        """A plan for one GET of `url` to `endpoint`, to end by `deadline` (default: item_deadline_s from now)."""
        return RequestPlan(self, self.endpoint(endpoint), url, self.deadline() if deadline is None else deadline)


class RequestPlan:
    """One GET over its tries: asked for the next step, told what each try brought."""

    def __init__(self, policy: HttpPolicy, endpoint: Endpoint, url: str, deadline: float) -> None:
        self.policy = policy
        self.endpoint = endpoint
        self.url = url
        self.deadline = deadline
        self.tries = 0
        self._settings = policy.settings
        self._clock = policy.clock
        self._error = ""  # why the last try failed, "" when it has not
        self._not_before = 0.0
        self._probe = 0
        self._cut = False  # this try's timeouts were shortened to fit the deadline
        self._failed_before = False  # an earlier try of this request already counted as a failure

    def next_step(self) -> Step:
        """The next step; raises Stopped, FetchError, CircuitOpen or DeadlineExceeded when no try should be made."""
        now = self._clock()
        if self.policy.stop.is_set():
            self._record(None, "", now)
            raise Stopped(f"GET {self.url}: not sent: the pipeline is stopping{self._last()}", attempts=self.tries)
        if self._error and self.tries > self._settings.retries:
            raise FetchError(f"GET {self.url}: {self._error}", attempts=self.tries)
        if now < self._not_before:
            if self._not_before >= self.deadline:
                raise self._late()
            return Step(self._not_before - now, send=False)
        try:
            slot = self.endpoint.reserve(now, self.deadline)
        except Refused as exc:
            raise CircuitOpen(f"GET {self.url}: {exc}{self._last()}", attempts=self.tries) from None
        if slot is None:
            raise self._late()
        wait_s, self._probe = slot
        remaining_s = self.deadline - now - wait_s
        connect_s = min(self._settings.connect_timeout_s, remaining_s)
        read_s = min(self._settings.read_timeout_s, remaining_s)
        self._cut = read_s < self._settings.read_timeout_s or connect_s < self._settings.connect_timeout_s
        self.tries += 1
        return Step(wait_s, True, connect_s, read_s)

    def body_budget_s(self) -> float:
        """How long the body may take once the headers are in: read_timeout_s, or less to meet the deadline."""
        budget_s = min(self._settings.read_timeout_s, self.deadline - self._clock())
        self._cut = self._cut or budget_s < self._settings.read_timeout_s
        return max(budget_s, 0.0)

    def answered(self, status: int, retry_after: str | None) -> bool:
        """A try got an answer: True when it is the result, False to try again (429 or 5xx, tries left)."""
        now = self._clock()
        if status not in RETRY_STATUSES:
            self._record(True, "", now)
            return True
        self._record(False, f"HTTP {status}", now)
        pause_s = retry_after_s(retry_after, self.policy.wall_clock()) if retry_after else None
        cap_s = self._settings.retry_after_max_s
        if pause_s is not None and pause_s > cap_s:
            why = f"the server asked for a {pause_s:.0f}s pause (Retry-After), longer than retry_after_max_s={cap_s:g}"
            self.endpoint.open(now, pause_s, why)
            raise CircuitOpen(f"GET {self.url}: HTTP {status}; {why}", attempts=self.tries)
        if self.tries > self._settings.retries:
            return True
        if status == 429 or pause_s is not None:  # the server is busy: everyone waits, not only this try
            pause_s = self._backoff_s() if pause_s is None else pause_s
            self.endpoint.hold(now, pause_s)
        else:
            pause_s = self._backoff_s()
            self._not_before = now + pause_s
        if now + pause_s >= self.deadline or self.endpoint.refuses(now):
            return True  # no time or no leave for another try: this answer is the result
        self._error = f"HTTP {status}"
        return False

    def failed(self, what: str, *, timed_out: bool = False) -> None:
        """A try got no usable answer (`what` says why); the next step retries it or gives up."""
        now = self._clock()
        # A timeout we shortened to meet the deadline says nothing about the server.
        self._record(None if timed_out and self._cut else False, what, now)
        self._error = what
        self._not_before = now + self._backoff_s()

    def give_up(self, what: str, *, whole: bool = False) -> FetchError:
        """A try failed in a way no other try would mend (a bad URL): the error to raise (`what` after the URL,
        or the `whole` message)."""
        self._record(None, what, self._clock())
        return FetchError(what if whole else f"GET {self.url}: {what}", attempts=self.tries)

    def too_large(self, what: str) -> BodyTooLarge:
        """The answer's body is past max_body_bytes (`what` says how that was seen): the error to raise."""
        self._record(None, "", self._clock())  # the server answered: nothing for its breaker to count
        return BodyTooLarge(
            f"GET {self.url}: the body is larger than max_body_bytes={self._settings.max_body_bytes} "
            f"({what}): not read on, and not retried (the same URL sends the same body)",
            attempts=self.tries,
        )

    def abandon(self) -> None:
        """The try ended without an outcome (cancelled, or an unexpected error): free its probe slot."""
        self._record(None, "", self._clock())

    def _record(self, ok: bool | None, what: str, now: float) -> None:
        # The breaker counts failed requests, not tries: a request counts as failed at its first failed try
        # (so a hanging endpoint trips it after one timeout, not after every retry), its retries count no
        # more unless one is the half-open probe, and any success resets the count.
        if ok is False and self._failed_before and not self._probe:
            ok = None
        self._failed_before = self._failed_before or ok is False
        self.endpoint.record(ok, what, probe=self._probe, now_s=now)
        self._probe = 0

    def _backoff_s(self) -> float:
        return min(self._settings.backoff_s * 2 ** max(self.tries - 1, 0), self._settings.backoff_max_s)

    def _late(self) -> DeadlineExceeded:
        which = "another" if self.tries else "a"
        return DeadlineExceeded(
            f"GET {self.url}: the item's deadline (item_deadline_s="
            f"{self._settings.item_deadline_s:g}) leaves no time for {which} try{self._last()}",
            attempts=self.tries,
        )

    def _last(self) -> str:
        return f" (last try: {self._error})" if self._error else ""


def retry_after_s(value: str, now_epoch_s: float) -> float | None:
    """Seconds a Retry-After header asks for (delay-seconds or an HTTP date); None when it is not readable."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    if parsed[9] is None:  # a date without a zone is read as GMT, as HTTP dates are
        parsed = (*parsed[:9], 0)
    return max(email.utils.mktime_tz(parsed) - now_epoch_s, 0.0)
