"""A worker base for stages that fetch over HTTP: its params set timeouts, retries and the rate."""
from __future__ import annotations

import os
from typing import Any

from core.http import HttpClient, HttpSettings
from workers.base import Worker


class HttpWorker(Worker):
    """Worker whose instances share one HttpClient (session, retries, rate limit) per group."""

    #: Environment variable that overrides DEFAULT_USER_AGENT for this kind of worker.
    USER_AGENT_ENV = "HTTP_USER_AGENT"
    DEFAULT_USER_AGENT = "yaml-pipeline-runner/1.0 (python-requests)"

    def __init__(self, *, requests_per_second: float = 0.0, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 20.0, retries: int = 3, backoff_s: float = 0.5,
                 retry_after_max_s: float = 30.0, breaker_failures: int = 5, breaker_cooldown_s: float = 30.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http_settings = HttpSettings(
            user_agent=os.environ.get(self.USER_AGENT_ENV) or self.DEFAULT_USER_AGENT,
            connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s, retries=retries,
            backoff_s=backoff_s, retry_after_max_s=retry_after_max_s,
            requests_per_second=requests_per_second, breaker_failures=breaker_failures,
            breaker_cooldown_s=breaker_cooldown_s, pool_size=self.group.spec.instances,
        )

    @property
    def http(self) -> HttpClient:
        """The group's client, made on first use."""
        return self.group.resource("http", lambda: HttpClient(self.http_settings, stop=self.group.stop))
