"""A Redis queue's place in the run: its stream and the consumer group of its readers, the keys beside it, and
the scripts that change them (core/transport/redis/scripts.py). Its writer, fetcher, leases and settler share it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.transport.redis.client import RedisRun
from core.transport.redis.scripts import CLAIM, DEAD, FILL_ONCE, HAND_BACK, PUT, RELEASE, RENEW, SETTLE, STAGE


class Stream:
    """Queue `name` in the run: the stream `key`, read by the consumer group `group`."""

    def __init__(self, name: str, run: RedisRun, *, group: str, visibility_timeout_s: float) -> None:
        self.name = name
        self.run = run
        self.redis = run.redis
        self.key = run.key("q", name)
        self.group = group
        #: An entry held longer than this without its lease renewed is claimed by another consumer.
        self.visibility_timeout_s = visibility_timeout_s
        self.scripts = {
            name: self.redis.register_script(text)
            for name, text in (
                ("settle", SETTLE),
                ("dead", DEAD),
                ("hand_back", HAND_BACK),
                ("renew", RENEW),
                ("claim", CLAIM),
                ("fill", FILL_ONCE),
                ("put", PUT),
                ("stage", STAGE),
                ("release", RELEASE),
            )
        }

    def create(self) -> None:
        """Make the stream and its consumer group if this is the run's first process to need them."""
        import redis

        try:
            self.run.call(lambda: self.redis.xgroup_create(self.key, self.group, id="0", mkstream=True))
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def backlog(self) -> tuple[int, int]:
        """(entries waiting in the stream for any reader of the run, entries read and not yet settled): the
        queue as the whole run sees it, where a process's own size is only what it has fetched."""

        def read() -> tuple[int, int]:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self.key)
                pipe.xpending(self.key, self.group)
                length, pending = pipe.execute()
            held = int(pending.get("pending", 0)) if isinstance(pending, dict) else int(pending[0])
            return max(int(length) - held, 0), held

        return self.run.call(read)

    def stage_key(self, entry_id: str) -> str:
        """Where a generator's outputs for Redis wait until entry `entry_id` is settled (core/run/redis_exits.py)."""
        return self.run.key("stage", self.name, entry_id)

    def script(
        self, name: str, keys: list[Any], args: list[Any], *, before_retry: Callable[[], None] | None = None
    ) -> Any:
        """Run script `name` within the run's retry budget (RedisRun.call, with its `before_retry`)."""
        return self.run.call(lambda: self.scripts[name](keys=keys, args=args), before_retry=before_retry)


def text(value: Any) -> str:
    """A name or value from Redis as text."""
    # An entry someone else wrote may hold any bytes (a pickle, say): kept as escaped text, never fatal, so
    # that it can be dead-lettered as undecodable instead of stopping the fetcher.
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def fields(entry: Any) -> dict[str, Any]:
    """An entry's fields as text, whether the reply gave a mapping or a flat list."""
    if isinstance(entry, dict):
        return {text(k): text(v) for k, v in entry.items()}
    flat = list(entry)
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
