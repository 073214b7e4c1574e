"""One run across several machines, coordinated through Redis: its keys, heartbeats, the fetchers to wake,
calls within the retry budget, and the checks that the server will keep the run's state (who runs which group
and each process's report: core/transport/redis/members.py).

Every key of a run starts with `yp:{pipeline}:{run id}:` (`yp` is REDIS_KEY_PREFIX when that is set), so two
runs never mix; when the run has ended, the process that reports it sets all of them to expire (KEY_TTL_S).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

from core.base.errors import StartupError

logger = logging.getLogger(__name__)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
HEARTBEAT_S = 2.0  # how often a process says it is alive
HEARTBEAT_TTL_S = 10.0  # a process silent this long is taken for dead: its groups end, its items get claimed
KEY_TTL_S = 86400  # a finished run's keys live a day, for looking at, then go
RETRY_BUDGET_S = 20.0  # Redis unreachable longer than this ends the run (items in hand dead-lettered here)
KEY_PREFIX = "yp"  # the first part of every key of a run, unless REDIS_KEY_PREFIX says otherwise
MAX_BULK_BYTES = 512 * 1024 * 1024  # the server's proto-max-bulk-len, until it says what it is


class RedisLost(Exception):
    """Redis could not be reached within the retry budget, lost the run's state, or was refused at start."""


class RedisRun:
    """This process's part in a run: the connection, the run's keys, and its heartbeat."""

    def __init__(
        self, url: str, pipeline: str, run_id: str, *, retry_budget_s: float = RETRY_BUDGET_S, client: Any = None
    ) -> None:
        import redis

        self.url = url
        self.pipeline = pipeline
        self.run_id = run_id
        self.prefix = f"{os.environ.get('REDIS_KEY_PREFIX') or KEY_PREFIX}:{pipeline}:{run_id}:"
        self.process_id = f"{socket.gethostname()}:{os.getpid()}"
        # Names this process's calls in the run's `calls` hash (core/transport/redis/scripts.py): never reused, even
        # by a process that gets the same host name and pid later (a container restarted).
        self._nonce = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)  # next() is atomic: calls of several threads never share a number
        #: The largest value the server takes (proto-max-bulk-len): a bigger item is that item's error.
        self.max_bulk_bytes = MAX_BULK_BYTES
        #: The run's keys vanished from the server (flushed, or a restart without persistence).
        self.gone = False
        self.retry_budget_s = retry_budget_s
        # Any: redis-py types every reply `Awaitable | Any`, for its sync client too
        self.redis: Any = client or redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=10
        )
        self.errors = (redis.ConnectionError, redis.TimeoutError)
        self.response_error = redis.ResponseError  # the server refused a command (never retried)
        self.lost: RedisLost | None = None
        self.on_lost: Callable[[RedisLost], None] = lambda error: None
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="redis-heartbeat", daemon=True)

    def key(self, *parts: str) -> str:
        """A key of this run."""
        return self.prefix + ":".join(parts)

    # --- start and end ----------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, check the server keeps state, join the run (creating it if new); StartupError if not."""
        try:
            self.redis.ping()
            policy = self.redis.config_get("maxmemory-policy").get("maxmemory-policy", "")
            appendonly = self.redis.config_get("appendonly").get("appendonly", "")
            self.max_bulk_bytes = _bulk_limit(self.redis) or self.max_bulk_bytes
        except self.errors as exc:
            self._refuse(f"Redis at {self.describe()} cannot be reached: {exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. CONFIG disabled: say so, do not guess
            self._refuse(f"Redis at {self.describe()}: cannot read its settings ({exc})")
        if policy != "noeviction":
            self._refuse(
                f"Redis at {self.describe()} has maxmemory-policy {policy}: it may evict the run's "
                "queues under memory pressure; set it to noeviction (CONFIG SET maxmemory-policy "
                "noeviction)"
            )
        created = self.redis.hsetnx(self.key("run"), "started", json.dumps(time.time()))
        self.redis.hsetnx(self.key("run"), "pipeline", self.pipeline)
        # Said once for the run, by its first process to see it, not by every process that joins.
        if appendonly != "yes" and self.redis.hsetnx(self.key("run"), "aof_warned", "1"):
            logger.warning(
                "Redis at %s keeps nothing on disk (appendonly no): if it restarts, the run's queues "
                "are gone and the run stops; turn on AOF (CONFIG SET appendonly yes) to survive restarts",
                self.describe(),
            )
        logger.info(
            "%s run %s (Redis %s, process %s)",
            "started" if created else "joined",
            self.run_id,
            self.describe(),
            self.process_id,
        )
        self._beat_once()
        self._heartbeat.start()

    def _refuse(self, why: str) -> NoReturn:
        """Not joining the run: StartupError. Lost from the start too, so that nothing after (reports, closing
        the queues) writes to a server the run refused or waits out the retry budget on one never there."""
        self.lost = RedisLost(why)
        raise StartupError(why) from None

    def close(self) -> None:
        """Stop the heartbeat (this process is done) and say so."""
        self._stop.set()
        if self._heartbeat.ident is not None:
            self._heartbeat.join(HEARTBEAT_S * 3)
        try:
            self.redis.delete(self.key("hb", self.process_id))
        except self.errors:
            pass
        self.redis.close()

    def expire_all(self) -> int:
        """Let every key of the run expire in KEY_TTL_S (the run has ended); return how many."""
        keys = list(self.redis.scan_iter(match=self.prefix + "*", count=500))
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.expire(key, KEY_TTL_S)
            pipe.execute()
        return len(keys)

    def call_id(self, caller: str) -> tuple[str, str]:
        """(field, seq) for one call of `caller` that a script records, so that a retry of it is recognised: a
        caller is a thread or a settler, whose calls go one at a time."""
        return f"{caller}:{self._nonce}", str(next(self._seq))

    def thread_call_id(self) -> tuple[str, str]:
        """call_id() for a put or a stage made by the calling thread."""
        return self.call_id(f"t{threading.get_ident()}")

    def refresh_limits(self) -> None:
        """Read proto-max-bulk-len again (a call failed: it may have been lowered since the run started)."""
        try:
            self.max_bulk_bytes = _bulk_limit(self.redis) or self.max_bulk_bytes
        except Exception:  # noqa: BLE001 - unreachable, or CONFIG refused: keep what is known
            pass

    def describe(self) -> str:
        """The URL without its password."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        if parts.password:
            return self.url.replace(f":{parts.password}@", ":***@")
        return self.url

    # --- liveness ------------------------------------------------------------------------------------

    def alive(self, process_id: str) -> bool:
        """Whether a process of the run has beaten its heart lately."""
        return bool(self.call(lambda: self.redis.exists(self.key("hb", process_id))))

    def _beat_once(self) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key("hb", self.process_id), "1", px=int(HEARTBEAT_TTL_S * 1000))
            pipe.exists(self.key("run"))
            _, present = pipe.execute()
        if not present:
            raise self._vanished_error()

    def vanished(self) -> RedisLost | None:
        """The error to stop with if the run's keys are gone from Redis (a restart without persistence, a flush)."""
        try:
            return None if self.redis.exists(self.key("run")) else self._vanished_error()
        except self.errors:
            return None

    def _vanished_error(self) -> RedisLost:
        self.gone = True
        return RedisLost(
            f"Redis at {self.describe()} no longer has run {self.run_id} (restarted without "
            "persistence?): its queues are gone, so the run cannot go on"
        )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.call(self._beat_once)
            except RedisLost as exc:
                self.lose(exc)
                return
            except Exception as exc:  # noqa: BLE001 - a refused command (out of memory, say): the run cannot go on
                self.lose(RedisLost(f"Redis at {self.describe()} refused the heartbeat: {type(exc).__name__}: {exc}"))
                return

    # --- waking the fetchers of the run ---------------------------------------------------------------

    def reader(self) -> Any:
        """A connection of its own for a queue's fetcher, so that its blocking reads can be cut short."""
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=3, single_connection_client=True)

    def register_reader(self, name: str, client: Any) -> None:
        """List `client` (a fetcher's connection, after each connect) as one to wake when an end comes."""
        self.call(lambda: self.redis.hset(self.key("readers"), f"{self.process_id}:{name}", client.client_id()))

    def wake_readers(self) -> None:
        """Something ended (a queue, a group): cut every fetcher's blocking read short, in every process of
        the run, so that each looks at its queue's end now rather than when its read times out. Client ids
        are never reused by a running server; an id that is gone is ignored by it."""

        def wake() -> None:
            ids = self.redis.hvals(self.key("readers"))
            with self.redis.pipeline(transaction=False) as pipe:
                for client_id in ids:
                    pipe.client_unblock(int(client_id))
                pipe.execute()

        self.call(wake)

    # --- calling Redis within the retry budget ----------------------------------------------------------

    def call(self, operation: Callable[[], Any], *, before_retry: Callable[[], None] | None = None) -> Any:
        """Run `operation`, retrying a lost connection with backoff for up to retry_budget_s; then RedisLost.
        `before_retry` runs before each retry (and may raise to give up: an item the server refuses for its
        size is sent again and again otherwise, as the server closes the connection while it is written)."""
        if self.lost is not None:
            raise self.lost
        deadline = time.monotonic() + self.retry_budget_s
        wait_s = 0.05
        while True:
            try:
                return operation()
            except self.errors as exc:
                if time.monotonic() + wait_s > deadline:
                    lost = RedisLost(
                        f"Redis at {self.describe()} unreachable for {self.retry_budget_s:g}s (the retry budget): {exc}"
                    )
                    self.lose(lost)
                    raise (self.lost or lost) from None
                logger.warning("Redis at %s: %s; retrying in %.2fs", self.describe(), exc, wait_s)
                self._stop.wait(wait_s)
                wait_s = min(wait_s * 2, 2.0)
                if before_retry is not None:
                    before_retry()

    def lose(self, error: RedisLost) -> None:
        """The run cannot go on with Redis: say so once, and stop it (on_lost)."""
        if self.lost is None:
            self.lost = error
            logger.error("%s", error)
            self.on_lost(error)


def _bulk_limit(client: Any) -> int | None:
    """The server's proto-max-bulk-len in bytes, if it says."""
    value = client.config_get("proto-max-bulk-len").get("proto-max-bulk-len")
    return int(value) if value and str(value).isdigit() else None
