"""Worker bases for stages that fetch over HTTP: their params set timeouts, retries, the rate, the breaker
and the deadline of an item; the group's instances share one client (and one HttpPolicy)."""

from __future__ import annotations

import numbers
import os
from typing import TYPE_CHECKING, Any

from core.http.policy import MAX_BODY_BYTES, HttpSettings
from workers.base import Worker

if TYPE_CHECKING:
    from core.http.aiohttp_client import AsyncHttpClient
    from core.http.client import HttpClient

# Params that must be > 0, and params that must be >= 0 (the import check has made sure they are numbers).
_POSITIVE = ("connect_timeout_s", "read_timeout_s", "item_deadline_s")
_NOT_NEGATIVE = ("requests_per_second", "retries", "backoff_s", "retry_after_max_s", "breaker_cooldown_s")


class HttpWorker(Worker):
    """Worker whose instances share one HttpClient (session, retries, rate limit, breakers) per group."""

    #: requests, imported while the run starts (Worker.preload).
    preload: tuple[str, ...] = ("core.http.client",)
    #: Environment variable that overrides DEFAULT_USER_AGENT for this kind of worker.
    USER_AGENT_ENV = "HTTP_USER_AGENT"
    DEFAULT_USER_AGENT = "yaml-pipeline-runner/1.0 (python-requests)"

    def __init__(
        self,
        *,
        requests_per_second: float = 0.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 20.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        retry_after_max_s: float = 30.0,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 30.0,
        item_deadline_s: float = 60.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.http_settings = HttpSettings(
            user_agent=os.environ.get(self.USER_AGENT_ENV) or self.DEFAULT_USER_AGENT,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            retry_after_max_s=retry_after_max_s,
            requests_per_second=requests_per_second,
            breaker_failures=breaker_failures,
            breaker_cooldown_s=breaker_cooldown_s,
            item_deadline_s=item_deadline_s,
            pool_size=self.group.spec.instances,
            max_body_bytes=max_body_bytes,
        )

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[tuple[str, str]]:
        """(param, message) for each HTTP param out of its range."""
        problems = list(super().check_params(params))
        for key in _POSITIVE + _NOT_NEGATIVE + ("breaker_failures", "max_body_bytes"):
            value: Any = params.get(key)
            if not _is_number(value):
                continue  # absent, or of the wrong type (reported by the import check)
            if key in _POSITIVE and not value > 0:
                problems.append((key, f"must be more than 0, got {value!r}"))
            elif key in _NOT_NEGATIVE and not value >= 0:
                problems.append((key, f"must be 0 or more, got {value!r}"))
            elif key in ("breaker_failures", "max_body_bytes") and not value >= 1:
                problems.append((key, f"must be at least 1, got {value!r}"))
        return problems

    @property
    def http(self) -> HttpClient:
        """The group's blocking client, made on first use."""
        from core.http.client import HttpClient  # here, not at the top: --check need not load requests

        return self.group.resource("http", lambda: HttpClient(self.http_settings, stop=self.group.stop))


class AsyncHttpWorker(HttpWorker):
    """HttpWorker for coroutine workers (`async def process`): `aio_http` is the group's aiohttp client.

    The client is a group resource with `aclose()`, which the asyncio runner awaits on the group's loop
    once every instance has ended; its sync `close()` (WorkerGroup.close) is then a no-op.
    """

    #: aiohttp (and not requests), imported while the run starts (Worker.preload).
    preload: tuple[str, ...] = ("core.http.aiohttp_client",)

    def setup(self) -> None:
        """Make the group's client (importing aiohttp, about 0.1 s) as the loop starts, while the stages
        upstream are still fetching, rather than when the first item is already waiting. A subclass that
        has its own setup() calls this one too (super().setup()); without it the client is made on first use."""
        self.aio_http  # noqa: B018 - made for its side effect

    @property
    def aio_http(self) -> AsyncHttpClient:
        """The group's AsyncHttpClient; its session is made in the running loop on its first request."""
        from core.http.aiohttp_client import AsyncHttpClient  # only coroutine workers need aiohttp

        return self.group.resource("aiohttp", lambda: AsyncHttpClient(self.http_settings, stop=self.group.stop))


def _is_number(value: Any) -> bool:
    """An int, a float or a Fraction as given (compared as it is: an int may be too large for a float)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
