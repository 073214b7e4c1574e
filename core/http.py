"""HTTP for workers: one session per group, timeouts on every request, bounded retries that never
hammer a server, and a request rate shared by the group's instances."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import DecodeError, InvalidHeader, MaxRetryError, ProtocolError, ReadTimeoutError, ResponseError
from urllib3.util.retry import Retry

from core.errors import ItemError

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
PROXY_VARS = tuple(name for upper in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
                   for name in (upper, upper.lower()))
BODY_CHUNK = 64 * 1024


@dataclass(frozen=True)
class HttpSettings:
    """How one worker group talks HTTP. Worst case for one request, every retry spent:
    (retries + 1) x (connect + 2 x read timeout: headers, then the whole body) + the waits between tries
    (each at most backoff_max_s, or retry_after_max_s when the server sent Retry-After)."""

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
    pool_size: int = 10


class FetchError(ItemError):
    """No response: the connection failed, timed out or broke off, after every retry."""


class CircuitOpen(ItemError):
    """Not sent: the server is down or asked for a pause longer than the cap; the group waits it out."""


class Pacer:
    """What a group's instances share about the server: the spacing of request starts, the pauses
    the server asked for (a 429 slows every instance, not just the one that got it), and a circuit
    that stops sending for a cooldown after breaker_failures failed requests in a row."""

    def __init__(self, settings: HttpSettings, *, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.interval_s = 1.0 / settings.requests_per_second if settings.requests_per_second > 0 else 0.0
        self.stop = stop or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0
        self._open_until = 0.0
        self._why_open = ""
        self._failures = 0

    def before_request(self) -> None:
        """Wait for this request's slot; raise CircuitOpen (nothing sent) while the circuit is open."""
        if self.stop.is_set():
            raise ItemError("not sent: the pipeline is stopping")
        with self._lock:
            now = self._clock()
            if now < self._open_until:
                raise CircuitOpen(f"not sent: {self._why_open}; sending again in {self._open_until - now:.0f}s",
                                  attempts=0)
            slot = max(now, self._next)
            self._next = slot + self.interval_s
        self.sleep(slot - now)

    def hold(self, seconds: float) -> None:
        """The server asked for a pause: no instance of the group starts a request before it ends."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)
        self.sleep(seconds)

    def open_circuit(self, seconds: float, why: str) -> None:
        """Send nothing for `seconds`; requests meanwhile fail at once with `why`."""
        with self._lock:
            self._open_until = max(self._open_until, self._clock() + seconds)
            self._why_open = why
        logger.warning("pausing all requests of this group for %.0fs: %s", seconds, why)

    def record(self, ok: bool, what: str = "") -> None:
        """Count a finished request; breaker_failures failures in a row open the circuit for the cooldown."""
        with self._lock:
            self._failures = 0 if ok else self._failures + 1
            tripped = self._failures >= self.settings.breaker_failures
        if tripped:  # stays tripped: after the cooldown one more failure reopens it at once
            self.open_circuit(self.settings.breaker_cooldown_s,
                              f"{self._failures} requests in a row failed (last: {what})")

    def sleep(self, seconds: float) -> None:
        """Wait, but not past a stop request."""
        if seconds > 0:
            self.stop.wait(seconds)


class PacedRetry(Retry):
    """urllib3's Retry (counts, backoff, Retry-After) with its waits sent through the group's Pacer,
    and a Retry-After longer than the cap answered by giving up at once instead of sleeping on it."""

    def __init__(self, *args: Any, pacer: Pacer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacer = pacer

    def new(self, **kwargs: Any) -> PacedRetry:
        return super().new(pacer=self.pacer, **kwargs)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        after = self._retry_after(response)
        if self.pacer and after is not None and after > self.pacer.settings.retry_after_max_s:
            self.pacer.open_circuit(after, f"the server asked for a {after:.0f}s pause (Retry-After), "
                                           f"longer than retry_after_max_s={self.pacer.settings.retry_after_max_s:g}")
            raise MaxRetryError(_pool, url, ResponseError(f"Retry-After {after:.0f}s is beyond the cap"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response=None) -> None:
        if self.pacer is None:
            return super().sleep(response)
        after = self._retry_after(response)
        # urllib3 retries the first time without waiting; a struggling server deserves the backoff.
        backoff = max(self.get_backoff_time(), self.backoff_factor)
        if after is not None or (response is not None and response.status == 429):
            self.pacer.hold(after if after is not None else backoff)
        else:
            self.pacer.sleep(backoff)

    def _retry_after(self, response) -> float | None:
        if response is None or not self.respect_retry_after_header:
            return None
        try:
            return self.get_retry_after(response)
        except InvalidHeader:
            return None


def make_session(settings: HttpSettings, pacer: Pacer | None = None) -> requests.Session:
    """A session whose adapter retries connection errors, 429 and 5xx with backoff and Retry-After."""
    retry = PacedRetry(
        total=settings.retries, connect=settings.retries, read=settings.retries, status=settings.retries,
        other=0, backoff_factor=settings.backoff_s, backoff_max=settings.backoff_max_s,
        status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True, pacer=pacer,
        raise_on_status=False,  # hand back the last 429/5xx so the caller can say what it was
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=max(settings.pool_size, 1))
    session = requests.Session()
    # With trust_env, requests reads ~/.netrc, the proxy variables and the CA bundle variables again on every
    # request (a quarter of the client's CPU in a profile). Only the proxy rules (NO_PROXY) need that; a CA
    # bundle is read once here.
    session.trust_env = any(os.environ.get(name) for name in PROXY_VARS)
    if not session.trust_env:
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = settings.user_agent
    return session


class HttpClient:
    """GETs through a group's shared session and Pacer, with its timeouts and retry budget."""

    def __init__(self, settings: HttpSettings, *, stop: threading.Event | None = None,
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self.pacer = Pacer(settings, stop=stop)
        self.session = session or make_session(settings, self.pacer)
        self.timeout = (settings.connect_timeout_s, settings.read_timeout_s)

    def get(self, url: str) -> requests.Response:
        """The response (any status once retries are spent); FetchError when there is none."""
        for attempt in range(1, self.settings.retries + 2):
            self.pacer.before_request()
            try:
                response = self.session.get(url, timeout=self.timeout, stream=True)
                _read_body(response, budget_s=self.settings.read_timeout_s)
            except BODY_ERRORS as exc:
                if attempt <= self.settings.retries:
                    logger.info("GET %s: body not read (%s); retrying", url, exc)
                    self.pacer.sleep(min(self.settings.backoff_s * 2 ** (attempt - 1), self.settings.backoff_max_s))
                    continue
                self.pacer.record(False, f"{type(exc).__name__}")
                raise FetchError(f"GET {url}: {type(exc).__name__}: {exc}", attempts=attempt) from exc
            except requests.RequestException as exc:
                self.pacer.record(False, f"{type(exc).__name__}")
                raise FetchError(f"GET {url}: {type(exc).__name__}: {exc}",  # urllib3 spent its retries first
                                 attempts=attempt + self.settings.retries) from exc
            response.attempts = attempt + _retries_used(response)
            self.pacer.record(response.status_code < 500 and response.status_code != 429,
                              f"HTTP {response.status_code}")
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the session's pooled connections now (urllib3 2.x would leave them to the garbage collector)."""
        for adapter in {id(a): a for a in self.session.adapters.values()}.values():
            pools = adapter.poolmanager.pools
            for key in pools.keys():
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
        self.session.close()


class ResponseTooSlow(requests.exceptions.ReadTimeout):
    """The body kept coming, but too slowly: read_timeout_s bounds each read, this bounds the whole answer."""


# A body cut short or too slow fails after urllib3 has handed the response over, so urllib3's Retry
# never sees it; HttpClient retries these itself within the same budget.
BODY_ERRORS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError, ResponseTooSlow)


def _read_body(response: requests.Response, *, budget_s: float) -> None:
    """Read the whole body within `budget_s` (the read timeout) of its headers, or raise.

    requests reads a body in reads that each wait at most the read timeout, so a server sending a byte
    now and then could hold a worker for minutes; reading it here, piece by piece, puts a clock on it.
    """
    deadline = time.monotonic() + budget_s
    chunks = []
    try:
        while chunk := response.raw.read1(BODY_CHUNK):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                response.close()
                raise ResponseTooSlow(f"the body took longer than read_timeout_s={budget_s:g}")
    except ReadTimeoutError as exc:
        response.close()
        raise ResponseTooSlow(str(exc)) from exc
    except ProtocolError as exc:
        response.close()
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except DecodeError as exc:
        response.close()
        raise requests.exceptions.ContentDecodingError(exc) from exc
    response._content = b"".join(chunks)  # what Response.content would have read, now read on time
    response._content_consumed = True


def _retries_used(response: requests.Response) -> int:
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) if retries is not None else 0
