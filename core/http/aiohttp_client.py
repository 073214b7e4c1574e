"""Asyncio HTTP for coroutine workers: one aiohttp session per group per process, driven by the same
HttpPolicy as the blocking client (core/http/policy.py); this module only sends, reads and waits."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from urllib.parse import quote

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from core.http.deadlines import Deadlines
from core.http.policy import HttpPolicy, HttpSettings, Page, RequestPlan, Step, endpoint_of, trust_env
from core.http.tape import Player, replayed, tape

logger = logging.getLogger(__name__)

#: How often a wait looks at the group's stop event (a threading.Event, which a coroutine cannot await).
STOP_CHECK_S = 0.2
CLOSE_TIMEOUT_S = 5.0
# Tries that may go better next time; every timeout (ours and aiohttp's) is an asyncio.TimeoutError.
RETRIED = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


class AsyncHttpClient:
    """GETs on aiohttp under a group's HttpPolicy; its ClientSession is made in the running loop on first use.

    Close it with `await aclose()` from that loop (the asyncio runner does, through WorkerGroup.aclose()).
    `close()` is for WorkerGroup.close(): a no-op once aclose() ran, otherwise it closes the session on
    its own loop, from whichever thread calls it.
    """

    def __init__(
        self, settings: HttpSettings, *, stop: threading.Event | None = None, policy: HttpPolicy | None = None
    ) -> None:
        self.settings = settings
        self.policy = policy or HttpPolicy(settings, stop=stop)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None  # of the tries in flight, on the session's loop
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}

    async def get(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
        secret: bool = False,
    ) -> Page:
        """The answer, body read (any status once the tries are spent); an ItemError when there is none.

        `endpoint`, `deadline`, `headers` and `secret` as for HttpClient.get; offline likewise.
        """
        session = self._session if self._session is not None and not self._session.closed else self._open()
        plan = self.policy.plan(url, endpoint=endpoint or endpoint_of(url), deadline=deadline)
        recorded = tape()
        while True:
            step = plan.next_step()
            if step.wait_s > 0:
                await self._wait(step.wait_s)
            if not step.send or self.policy.stop.is_set():
                continue  # the next step waits no more, or says "stopping"
            answer: Mapping[str, str]
            if isinstance(recorded, Player):  # offline: the recorded answer, or this item's error
                replay = replayed(recorded, url, plan, self.settings.max_body_bytes)
                status, answer, body = replay.status, CIMultiDictProxy(CIMultiDict(replay.headers)), replay.body
            else:
                try:
                    status, reason, answer, body = await self._try(session, url, step, plan, headers)
                except _TooLarge as exc:
                    raise plan.too_large(str(exc)) from None
                except RETRIED as exc:
                    plan.failed(_describe(exc), timed_out=isinstance(exc, asyncio.TimeoutError))
                    continue
                except aiohttp.ClientError as exc:  # a bad URL, a malformed answer: no try will do better
                    raise plan.give_up(_describe(exc)) from exc
                except BaseException:  # cancelled: free the probe slot for another request
                    plan.abandon()
                    raise
                if recorded is not None:  # --record-http
                    recorded.record("GET", url, status, reason, answer.items(), body, secret=secret)
            if plan.answered(status, answer.get("Retry-After")):
                return Page(status, body, answer, plan.tries)

    async def _try(
        self,
        session: aiohttp.ClientSession,
        url: str,
        step: Step,
        plan: RequestPlan,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, Mapping[str, str], bytes]:
        loop, deadlines = self._loop, self._deadlines
        assert loop is not None and deadlines is not None, "a try runs on an open session"
        # sock_connect and sock_read, not connect/total: those count the wait for a pooled connection
        # (aiohttp#10313). The outer clock bounds the whole try by the deadline, then the body by its budget
        # (one timer for every try in flight: core/http/deadlines.py).
        with deadlines.until(loop.time() + max(plan.deadline - self.policy.clock(), 0.0)) as deadline:
            async with session.get(_as_given(url), timeout=self._timeout(step), headers=headers) as response:
                deadline.move(loop.time() + plan.body_budget_s())
                length, cap = response.content_length, self.settings.max_body_bytes
                if length is not None and length > cap:
                    response.close()
                    raise _TooLarge(f"Content-Length: {length}")
                if length is not None and hdrs.CONTENT_ENCODING not in response.headers:
                    body = await response.read()  # aiohttp reads what Content-Length says, no more
                else:  # chunked, or compressed: as long as it keeps coming, so counted as it arrives
                    body = await _read_capped(response, cap)
                return response.status, response.reason or "", response.headers, body

    def _timeout(self, step: Step) -> aiohttp.ClientTimeout:
        key = (step.connect_timeout_s, step.read_timeout_s)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=key[0], sock_read=key[1])
            if len(self._timeouts) < 64:  # shortened timeouts near a deadline are one-offs: keep the usual ones
                self._timeouts[key] = timeout
        return timeout

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds`, ending early once the group is stopping."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not self.policy.stop.is_set():
            left = end - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, STOP_CHECK_S))

    def _open(self) -> aiohttp.ClientSession:
        self._loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(self._loop)
        size = max(self.settings.pool_size, 1)
        # One connection per instance: no instance ever waits for the pool.
        connector = aiohttp.TCPConnector(limit=size, limit_per_host=size, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.settings.user_agent},
            trust_env=trust_env(),
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),  # a worker sends what cookies it means to (a Cookie header), no more
        )
        return self._session

    async def aclose(self) -> None:
        """Close the session and its connections; call it from the loop that uses it."""
        session, self._session = self._session, None
        if self._deadlines is not None:
            self._deadlines.close()
        if session is not None and not session.closed:
            await session.close()

    def close(self) -> None:
        """For WorkerGroup.close(), from any thread: close the session on its own loop if it is still open."""
        session, loop, self._session = self._session, self._loop, None
        if session is None or session.closed or loop is None or loop.is_closed():
            return
        if not loop.is_running():
            loop.run_until_complete(session.close())
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # called from inside the loop: it closes as soon as we yield
            loop.create_task(session.close())
        else:
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(CLOSE_TIMEOUT_S)


class _TooLarge(Exception):
    """The body is past max_body_bytes; the message says how that was seen."""


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, read as it arrives; _TooLarge (the connection closed) once it passes `max_bytes`."""
    chunks = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            response.close()
            raise _TooLarge(f"more than {max_bytes} bytes arrived")
        chunks.append(chunk)
    return b"".join(chunks)


def _as_given(url: str) -> URL:
    """The URL sent as written, its percent-escapes kept (yarl would turn %26 into &, another path to a strict
    server); characters a URL cannot hold are escaped, as requests does."""
    return URL(quote(url, safe="%/:=&?~#+!$,;'@()*[]"), encoded=True)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
