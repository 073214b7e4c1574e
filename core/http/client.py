"""Blocking HTTP for workers: one requests session per group, driven by the group's HttpPolicy
(core/http/policy.py), which decides the waits, the retries and the breaker; this module only sends,
reads the body against a clock, and waits on the group's stop event."""

from __future__ import annotations

import http.cookiejar
import os
import threading
import time
from collections.abc import Mapping

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPHeaderDict, HTTPResponse
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from core.http.policy import (
    BodyTooLarge,
    CircuitOpen,
    DeadlineExceeded,
    FetchError,
    HttpPolicy,
    HttpSettings,
    Page,
    Stopped,
    endpoint_of,
    trust_env,
)
from core.http.tape import Answer, Player, replayed, tape

# Workers import the HTTP API from here; the policy's names are re-exported.
__all__ = [
    "BodyTooLarge",
    "CircuitOpen",
    "DeadlineExceeded",
    "FetchError",
    "HttpClient",
    "HttpPolicy",
    "HttpSettings",
    "Page",
    "ResponseTooSlow",
    "Stopped",
    "endpoint_of",
    "make_session",
    "page_of",
    "trust_env",
]

BODY_CHUNK = 64 * 1024


def make_session(settings: HttpSettings) -> requests.Session:
    """A session with a connection pool for the group's instances; it never retries by itself (the policy does)."""
    adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=max(settings.pool_size, 1))
    session = requests.Session()
    session.trust_env = trust_env()
    if not session.trust_env:
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = settings.user_agent
    # A worker sends what cookies it means to (a Cookie header), no more: the jar keeps none.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


class HttpClient:
    """GETs through a group's shared session under its HttpPolicy: timeouts, retries, pacing, breakers, deadline."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        stop: threading.Event | None = None,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or HttpPolicy(settings, stop=stop)
        self.session = session or make_session(settings)

    def get(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
        secret: bool = False,
    ) -> requests.Response:
        """The response, body read (any status once the tries are spent); an ItemError when there is none.

        `endpoint` names whose pacer and breaker the request goes through (default: the URL's host);
        `deadline` (on the policy's clock) bounds every try and wait (default: item_deadline_s from now);
        `headers` go with this request only; a `secret` answer (a token) is never written by --record-http.
        Offline (--offline), the answers come from the recorded ones (core/http/tape.py) and nothing is sent.
        """
        plan = self.policy.plan(url, endpoint=endpoint or endpoint_of(url), deadline=deadline)
        stop = self.policy.stop
        recorded = tape()
        while True:
            step = plan.next_step()
            if step.wait_s > 0 and stop.wait(step.wait_s):
                continue  # the next step says "stopping"
            if not step.send:
                continue
            if isinstance(recorded, Player):  # offline: the recorded answer, or this item's error
                response = _replayed(url, replayed(recorded, url, plan, self.settings.max_body_bytes))
            else:
                try:
                    response = self.session.get(
                        url, timeout=(step.connect_timeout_s, step.read_timeout_s), stream=True, headers=headers
                    )
                    _read_body(response, budget_s=plan.body_budget_s(), max_bytes=self.settings.max_body_bytes)
                except _TooLarge as exc:
                    raise plan.too_large(str(exc)) from None
                except RETRIED as exc:
                    plan.failed(describe_failure(exc), timed_out=isinstance(exc, requests.Timeout))
                    continue
                except requests.RequestException as exc:  # a bad URL or scheme: no try will do better
                    raise plan.give_up(describe_failure(exc)) from exc
                except BaseException:
                    plan.abandon()
                    raise
                if recorded is not None:  # --record-http
                    status, reason, read = response.status_code, response.reason, response.raw.headers.items()
                    recorded.record("GET", url, status, reason, read, response.content, secret=secret)
            if plan.answered(response.status_code, response.headers.get("Retry-After")):
                response.attempts = plan.tries  # type: ignore[attr-defined]  # read by the workers
                return response

    def close(self) -> None:
        """Close the session's pooled connections now (urllib3 2.x would leave them to the garbage collector)."""
        for adapter in {id(a): a for a in self.session.adapters.values()}.values():
            pools = adapter.poolmanager.pools  # type: ignore[attr-defined]  # an HTTPAdapter's
            for key in pools.keys():
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
        self.session.close()


def _replayed(url: str, answer: Answer) -> requests.Response:
    """A recorded answer as the Response the network would have given."""
    response = requests.Response()
    response.status_code, response.reason, response.url = answer.status, answer.reason, url
    response.headers = CaseInsensitiveDict()
    for name, value in answer.headers:  # as requests joins a header given twice
        response.headers[name] = f"{response.headers[name]}, {value}" if name in response.headers else value
    response.raw = HTTPResponse(body=b"", headers=HTTPHeaderDict(list(answer.headers)), status=answer.status)
    response.encoding = get_encoding_from_headers(response.headers)
    response._content = answer.body
    response._content_consumed = True  # type: ignore[attr-defined]
    return response


def page_of(response: requests.Response) -> Page:
    """A response whose body was read, as a Page."""
    # urllib3's headers keep each Set-Cookie apart (getlist); requests' own join them with commas.
    raw = getattr(response.raw, "headers", None)
    headers = raw if raw is not None and hasattr(raw, "getlist") else response.headers
    return Page(response.status_code, response.content, headers, getattr(response, "attempts", 1))


class ResponseTooSlow(requests.exceptions.ReadTimeout):
    """The body kept coming, but too slowly: read_timeout_s bounds each read, this bounds the whole answer."""


class _TooLarge(Exception):
    """The body is past max_body_bytes; the message says how that was seen."""


# Tries that may go better next time: no connection, no answer in time, an answer cut short or too slow.
RETRIED = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def _read_body(response: requests.Response, *, budget_s: float, max_bytes: int) -> None:
    """Read the whole body within `budget_s` (the read timeout) of its headers and within `max_bytes`, or raise.

    requests reads a body in reads that each wait at most the read timeout, so a server sending a byte
    now and then could hold a worker for minutes; reading it here, piece by piece, puts a clock on it,
    and a count: a Content-Length past the cap is refused before a byte is read, any other body at the cap.
    """
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        response.close()
        raise _TooLarge(f"Content-Length: {length}")
    deadline = time.monotonic() + budget_s
    chunks = []
    size = 0
    try:
        while chunk := response.raw.read1(BODY_CHUNK):  # decoded: a compressed body is capped as it unpacks
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                response.close()
                raise _TooLarge(f"more than {max_bytes} bytes arrived")
            if time.monotonic() > deadline:
                response.close()
                raise ResponseTooSlow(f"the body took longer than {budget_s:g}s (read_timeout_s or the deadline)")
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
    response._content_consumed = True  # type: ignore[attr-defined]


OFFLINE_HINT = "; offline? try --offline demo/"


def describe_failure(exc: requests.RequestException) -> str:
    """A failed request in a short line, its kind first, with its likely cause: requests and urllib3 nest their
    errors, and their text names the URL three times ("HTTPConnectionPool(host=...): Max retries exceeded with url:
    ... (Caused by NameResolutionError(...))"). The URL itself comes before, in the message that uses this."""
    kind, text = type(exc).__name__, str(exc)
    if "NameResolutionError" in text or "Failed to resolve" in text or "Name or service not known" in text:
        return f"{kind}: cannot resolve its host name: no network? (or no such host){OFFLINE_HINT}"
    if isinstance(exc, requests.ConnectTimeout):
        return f"{kind}: connecting timed out: no network? (or the host is down){OFFLINE_HINT}"
    if "Connection refused" in text:
        return f"{kind}: the connection was refused (nothing listening there?)"
    if isinstance(exc, requests.ReadTimeout) and "Read timed out" in text:
        return f"{kind}: the answer did not come within the read timeout"
    return f"{kind}: {text}" if len(text) < 300 else f"{kind}: {text[:300]}..."
