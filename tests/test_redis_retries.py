"""A Redis command retried after its reply was lost must not happen twice (issue 16, items 4 and 5).

Each test runs a redis-server of its own behind tests/redis_proxy.py, which lets one command through to the
server and cuts the connection before its reply comes back: the command ran, and the client, seeing the
connection reset, retries it (RedisRun.call) on a new connection. A put must not add its entries again, and a
settle or a dead letter that already happened must be recognised as done, not booked as "claimed by another
consumer".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis_proxy import RedisProxy
from redis_server import RedisServer

from core.transport.base import Delivery
from core.transport.redis.client import RedisRun
from core.transport.redis.queue import RedisQueue

WAIT_S = 10.0


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(appendonly=False) as redis_server:
        yield redis_server


@pytest.fixture
def proxy(server) -> Iterator[RedisProxy]:
    with RedisProxy(server.port) as lossy:
        yield lossy


@pytest.fixture
def run(proxy) -> Iterator[RedisRun]:
    redis_run = RedisRun(proxy.url(), "retries", f"test-{uuid.uuid4().hex[:8]}")
    yield redis_run
    redis_run.redis.close()


def items_in(server: RedisServer, key: str) -> list[Any]:
    with server.client() as client:
        return [json.loads(fields[b"d"]) for _, fields in client.xrange(key)]


def loaded(queue: RedisQueue) -> RedisQueue:
    """The queue with its scripts already on the server: a lost reply is then that of a script that ran (not
    of a NOSCRIPT answer, after which the client loads the script and sends it again anyway)."""
    for script in queue.stream.scripts.values():
        queue.redis.script_load(script.script)
    return queue


def reading(queue: RedisQueue) -> Delivery:
    """Start the queue's fetcher and take one delivery."""
    queue.fetcher.start(readers=1, prefetch=4)
    return queue.get(WAIT_S)


def test_a_put_whose_reply_was_lost_adds_its_entries_once(server, proxy, run):
    queue = loaded(RedisQueue("Q", 100, run, reader="G"))
    queue.stream.create()
    proxy.lose_reply(b"first-item")

    queue.put_many(["first-item", "second-item"])

    assert proxy.lost.is_set(), "no reply was lost"
    assert items_in(server, queue.key) == ["first-item", "second-item"]


def test_a_settle_whose_reply_was_lost_is_done_not_claimed(server, proxy, run):
    source = loaded(RedisQueue("Q", 100, run, reader="G"))
    source.stream.create()
    source.put_many(["in"])
    out = RedisQueue("Out", 100, run, reader="Next")
    out.stream.create()
    try:
        delivery = reading(source)
        proxy.lose_reply(b"settled-output")

        ok = source.settler.settle(delivery, ["settled-output"], (out.key,))

        assert proxy.lost.is_set(), "no reply was lost"
        assert ok is True, "a settle that happened was booked as another consumer's"
        assert items_in(server, out.key) == ["settled-output"]
        with server.client() as client:
            assert client.xpending(source.key, "G")["pending"] == 0
            assert client.xlen(source.key) == 0
    finally:
        source.fetcher.shutdown()


def test_a_dead_letter_whose_reply_was_lost_is_done_not_claimed(server, proxy, run):
    source = loaded(RedisQueue("Q", 100, run, reader="G"))
    source.stream.create()
    source.put_many(["doomed"])
    try:
        delivery = reading(source)
        proxy.lose_reply(b"dead-marker")

        ok = source.settler.dead(delivery, "failed: dead-marker", kind="failed")

        assert proxy.lost.is_set(), "no reply was lost"
        assert ok is True, "a dead letter that happened was booked as another consumer's"
        with server.client() as client:
            records = [json.loads(fields[b"r"]) for _, fields in client.xrange(run.key("dead"))]
            assert [(r["item"], r["kind"]) for r in records] == [("doomed", "failed")]
            assert client.xpending(source.key, "G")["pending"] == 0
    finally:
        source.fetcher.shutdown()
