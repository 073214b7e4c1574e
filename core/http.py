"""HTTP for workers: one session per group, timeouts on every request, bounded retries, a shared rate."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A body cut short or unreadable fails after urllib3 has handed the response over, so urllib3's
# Retry never sees it; HttpClient retries these itself within the same budget.
BODY_ERRORS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


@dataclass(frozen=True)
class HttpSettings:
    """How one worker group talks HTTP."""

    user_agent: str
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0
    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0
    retry_after_max_s: float = 30.0
    requests_per_second: float = 0.0
    pool_size: int = 10


def make_session(settings: HttpSettings) -> requests.Session:
    """A session whose adapter retries connection errors, 429 and 5xx with backoff and Retry-After."""
    retry = Retry(
        total=settings.retries, connect=settings.retries, read=settings.retries, status=settings.retries,
        other=0, backoff_factor=settings.backoff_s, backoff_max=settings.backoff_max_s,
        status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True, retry_after_max=int(settings.retry_after_max_s),
        raise_on_status=False,  # hand back the last 429/5xx so the caller can say what it was
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=max(settings.pool_size, 1))
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = settings.user_agent
    return session


class RateLimiter:
    """Spaces request starts of all instances of a group evenly; 0 requests per second means no limit."""

    def __init__(self, requests_per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0

    def delay(self) -> float:
        """Reserve the next slot and return how long to wait for it (the lock is not held while waiting)."""
        if not self.interval_s:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval_s
        return slot - now


class HttpClient:
    """GETs through a group's shared session, with its timeouts, retries and rate limit."""

    def __init__(self, settings: HttpSettings, *, session: requests.Session | None = None,
                 stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.session = session or make_session(settings)
        self.limiter = RateLimiter(settings.requests_per_second)
        self.stop = stop or threading.Event()
        self.timeout = (settings.connect_timeout_s, settings.read_timeout_s)

    def get(self, url: str) -> requests.Response:
        """The response (any status once retries are spent); raises requests' errors with `.attempts` set."""
        for attempt in range(1, self.settings.retries + 2):
            self._wait(self.limiter.delay())
            try:
                response = self.session.get(url, timeout=self.timeout)
            except BODY_ERRORS as exc:
                if attempt > self.settings.retries:
                    exc.attempts = attempt
                    raise
                logger.info("GET %s: body unreadable (%s); retrying", url, exc)
                self._wait(min(self.settings.backoff_s * 2 ** (attempt - 1), self.settings.backoff_max_s))
                continue
            except requests.RequestException as exc:
                exc.attempts = attempt + self.settings.retries  # urllib3 spent its retries first
                raise
            response.attempts = attempt + _retries_used(response)
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the session's pooled connections."""
        self.session.close()

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds)


def _retries_used(response: requests.Response) -> int:
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) if retries is not None else 0
