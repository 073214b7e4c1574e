"""LocalQueue.close(): every queued item reaches the reject handler, outside the queue's lock, and no reader
sees the queue ended before they all have."""

from __future__ import annotations

import logging
import threading

import pytest

from core.transport.base import DONE
from core.transport.local import LocalQueue

JOIN_TIMEOUT_S = 5.0


def test_a_reject_handler_may_use_the_queue():
    queue = LocalQueue("q", 10)
    sizes = []
    queue.on_reject = lambda item: sizes.append(queue.qsize())  # e.g. a status line sampled meanwhile
    for n in range(3):
        queue.put(n)
    closer = threading.Thread(target=queue.close)
    closer.start()
    closer.join(JOIN_TIMEOUT_S)

    assert not closer.is_alive(), "close() deadlocked: it called the reject handler under the queue's lock"
    assert sizes == [0, 0, 0]


def test_a_reject_handler_failing_on_one_item_still_gets_the_others(caplog):
    queue = LocalQueue("q", 10)
    rejected = []

    def reject(item):
        if item == 1:
            raise RuntimeError("cannot record 1")
        rejected.append(item)

    queue.on_reject = reject
    for n in range(4):
        queue.put(n)
    with caplog.at_level(logging.CRITICAL), pytest.raises(RuntimeError, match="cannot record 1"):
        queue.close()  # raised once the others were handed over

    assert rejected == [0, 2, 3]
    assert any("1" in record.getMessage() and record.levelno == logging.CRITICAL for record in caplog.records)


def test_no_reader_sees_the_end_before_every_queued_item_was_rejected():
    queue = LocalQueue("q", 10)
    inside, release = threading.Event(), threading.Event()
    rejected, seen = [], []

    def slow_reject(item):
        inside.set()
        release.wait(JOIN_TIMEOUT_S)
        rejected.append(item)

    queue.on_reject = slow_reject
    queue.put("x")
    closer = threading.Thread(target=queue.close)
    closer.start()
    assert inside.wait(JOIN_TIMEOUT_S)
    reader = threading.Thread(target=lambda: seen.append((queue.get(JOIN_TIMEOUT_S), list(rejected))))
    reader.start()
    release.set()
    for thread in (closer, reader):
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive()

    assert seen == [(DONE, ["x"])]  # the reader's DONE came only once "x" was recorded
