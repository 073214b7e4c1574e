"""core.transport.local.LocalQueue and DONE: order, blocking, waking on close, freezing, and never losing an item.

A call that must block is shown parked in the queue's wait and not woken (tests/blocking.py), not merely
still running after a moment, which a loaded machine gives whether or not the call would block."""

from __future__ import annotations

import copy
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from blocking import wait_parked

from core.transport.base import DONE, Delivery, Empty
from core.transport.local import LocalQueue

JOIN_TIMEOUT_S = 5.0


class Call(threading.Thread):
    """Runs one call in a thread and keeps its result or exception."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread to assert on
            self.error = exc

    def assert_blocked(self, queue: LocalQueue) -> None:
        """Parked in a wait of `queue` and not woken: it found it must wait (tests/blocking.py)."""
        wait_parked(self, queue)

    def outcome(self) -> Any:
        """Wait (bounded) for the call to end; its result, or its exception re-raised."""
        self.join(JOIN_TIMEOUT_S)
        assert not self.is_alive(), "the call is still blocked"
        if self.error is not None:
            raise self.error
        return self.result


def take(queue: LocalQueue, timeout_s: float | None = None) -> Any:
    """The next item (unwrapped from its Delivery), or DONE."""
    got = queue.get(timeout_s)
    if got is DONE:
        return DONE
    assert isinstance(got, Delivery)
    return got.item


@pytest.fixture
def rejected() -> list[Any]:
    """Items handed to on_reject, in order."""
    return []


@pytest.fixture
def channel(rejected) -> LocalQueue:
    """A channel of 2 whose refused items go to `rejected`."""
    made = LocalQueue("Numbers", maxsize=2)
    made.on_reject = rejected.append
    return made


def test_fifo_order():
    channel = LocalQueue("Numbers", maxsize=10)

    for n in range(10):
        assert channel.put(n) is True

    assert [take(channel) for _ in range(10)] == list(range(10))
    assert channel.qsize() == 0


def test_fifo_order_across_threads():
    channel = LocalQueue("Numbers", maxsize=3)
    putter = Call(lambda: [channel.put(n) for n in range(100)])

    got = [take(channel, JOIN_TIMEOUT_S) for _ in range(100)]

    assert got == list(range(100))
    assert putter.outcome() == [True] * 100
    assert channel.high_water <= 3


def test_maxsize_must_be_at_least_1():
    with pytest.raises(ValueError, match="maxsize must be at least 1"):
        LocalQueue("Numbers", maxsize=0)


def test_put_blocks_while_full_and_a_get_releases_it(channel):
    channel.put(1)
    channel.put(2)
    putter = Call(lambda: channel.put(3))

    putter.assert_blocked(channel)
    assert channel.qsize() == 2

    assert take(channel) == 1
    assert putter.outcome() is True
    assert [take(channel), take(channel)] == [2, 3]


def test_get_blocks_while_empty_and_a_put_releases_it(channel):
    getter = Call(lambda: take(channel))

    getter.assert_blocked(channel)
    channel.put("item")

    assert getter.outcome() == "item"


def test_get_with_timeout_raises_empty(channel):
    with pytest.raises(Empty):
        take(channel, 0.05)
    with pytest.raises(Empty):
        take(channel, 0)


def test_get_with_timeout_returns_an_item_put_while_waiting(channel):
    getter = Call(lambda: take(channel, JOIN_TIMEOUT_S))
    getter.assert_blocked(channel)

    channel.put(7)

    assert getter.outcome() == 7


def test_a_reader_filling_a_batch_sleeps_until_its_batch_could_be_filled():
    queue = LocalQueue("Records", maxsize=100)
    getter = Call(lambda: queue.get(JOIN_TIMEOUT_S, wake_at=3).item)

    queue.put("a")
    queue.put("b")
    getter.assert_blocked(queue)  # two are queued: not yet worth waking for
    queue.put("c")

    assert getter.outcome() == "a"
    assert [take(queue), take(queue)] == ["b", "c"]


def test_a_reader_filling_a_batch_is_woken_by_a_done_and_takes_what_is_there():
    queue = LocalQueue("Records", maxsize=100)
    getter = Call(lambda: queue.get(JOIN_TIMEOUT_S, wake_at=50).item)
    queue.put("a")
    getter.assert_blocked(queue)

    queue.put_done(1)

    assert getter.outcome() == "a"
    assert take(queue) is DONE


def test_a_reader_filling_a_batch_is_woken_by_a_close(rejected):
    queue = LocalQueue("Records", maxsize=100)
    queue.on_reject = rejected.append
    getter = Call(lambda: queue.get(JOIN_TIMEOUT_S, wake_at=50))
    queue.put("a")
    getter.assert_blocked(queue)

    queue.close()

    assert getter.outcome() is DONE
    assert rejected == ["a"]


def test_a_reader_filling_a_batch_takes_what_came_when_its_time_is_up():
    queue = LocalQueue("Records", maxsize=100)
    queue.put("a")

    assert queue.get(0.05, wake_at=50).item == "a"  # its batch is due: it takes what there is
    with pytest.raises(Empty):
        queue.get(0.01, wake_at=50)


def test_a_full_queue_wakes_a_reader_asking_for_more_than_it_holds(channel):
    getter = Call(lambda: channel.get(JOIN_TIMEOUT_S, wake_at=10).item)  # channel: maxsize 2
    channel.put(1)
    getter.assert_blocked(channel)

    channel.put(2)

    assert getter.outcome() == 1


def test_a_producer_waiting_on_a_full_queue_is_woken_once_a_quarter_of_it_is_free():
    queue = LocalQueue("Symbols", maxsize=8)
    queue.put_many(list(range(8)))
    putter = Call(lambda: queue.put(8))

    assert take(queue) == 0
    putter.assert_blocked(queue)  # one slot free: not yet worth waking for
    assert take(queue) == 1

    assert putter.outcome() is True
    assert [take(queue) for _ in range(7)] == list(range(2, 9))


def test_a_reader_filling_a_batch_and_a_producer_on_a_full_queue_never_wait_for_each_other():
    queue = LocalQueue("Records", maxsize=8)
    queue.put_many(list(range(8)))
    putter = Call(lambda: queue.put_many(list(range(8, 16))))
    putter.assert_blocked(queue)

    # A sink whose batch has room for 100 takes one at a time, each get asking for its batch's room: it
    # takes its share of the full queue, which wakes the producer, and so on, none waiting out a timeout.
    started = time.monotonic()
    taken = [queue.get(JOIN_TIMEOUT_S, wake_at=100 - n).item for n in range(10)]
    assert time.monotonic() - started < JOIN_TIMEOUT_S

    assert putter.outcome() >= 0  # every item put
    taken += [queue.get(0, wake_at=90).item for _ in range(6)]  # its batch is due: the rest at once
    assert taken == list(range(16))


def test_readers_asking_for_different_amounts_are_each_woken_at_theirs():
    queue = LocalQueue("Records", maxsize=100)
    patient = Call(lambda: queue.get(JOIN_TIMEOUT_S, wake_at=3).item)
    eager = Call(lambda: queue.get(JOIN_TIMEOUT_S).item)
    patient.assert_blocked(queue)

    queue.put("a")

    assert eager.outcome() == "a"
    patient.assert_blocked(queue)
    for item in "bcd":
        queue.put(item)
    assert patient.outcome() == "b"


def test_close_wakes_a_blocked_put_and_rejects_its_item(channel, rejected):
    channel.put(1)
    channel.put(2)
    putter = Call(lambda: channel.put(3))
    putter.assert_blocked(channel)

    assert channel.close() == 2

    assert putter.outcome() is False
    assert sorted(rejected) == [1, 2, 3]
    assert rejected.index(1) < rejected.index(2)


def test_close_wakes_every_blocked_get_with_done(channel):
    getters = [Call(lambda: take(channel)) for _ in range(3)]
    for getter in getters:
        getter.assert_blocked(channel)

    assert channel.close() == 0

    assert [getter.outcome() for getter in getters] == [DONE, DONE, DONE]


def test_close_hands_queued_items_to_on_reject_and_returns_their_count(channel, rejected):
    channel.put("a")
    channel.put("b")
    channel.put_done(2)

    assert channel.close() == 2  # DONE markers are not items

    assert rejected == ["a", "b"]
    assert channel.closed
    assert channel.qsize() == 0


def test_closed_channel_refuses_puts_and_hands_out_done(channel, rejected):
    channel.close()

    assert channel.put("late") is False
    assert rejected == ["late"]
    assert take(channel) is DONE
    assert take(channel, 0) is DONE  # closed: DONE, not Empty
    assert channel.put_count == 0


def test_close_without_on_reject_refuses_to_lose_items_silently():
    channel = LocalQueue("Numbers", maxsize=2)
    channel.put("a")

    with pytest.raises(RuntimeError, match="would be lost"):
        channel.close()


def test_put_done_never_blocks_even_when_full(channel):
    channel.put(1)
    channel.put(2)

    ender = Call(lambda: channel.put_done(3))

    assert ender.outcome() is None
    assert channel.qsize() == 2  # DONE markers are not counted as waiting items
    assert [take(channel) for _ in range(5)] == [1, 2, DONE, DONE, DONE]


def test_put_done_wakes_every_blocked_get(channel):
    getters = [Call(lambda: take(channel)) for _ in range(3)]
    for getter in getters:
        getter.assert_blocked(channel)

    channel.put_done(3)

    assert [getter.outcome() for getter in getters] == [DONE, DONE, DONE]


def test_done_comes_after_the_items_queued_before_it(channel):
    channel.put("a")
    channel.put_done(1)

    assert take(channel) == "a"
    assert take(channel) is DONE


def test_counters(channel):
    channel.put(1)
    channel.put(2)
    take(channel)
    channel.put_done(1)
    take(channel)
    take(channel)  # DONE

    assert (channel.put_count, channel.get_count, channel.high_water) == (2, 2, 2)


def test_done_is_one_object_that_survives_pickling_and_copying():
    assert pickle.loads(pickle.dumps(DONE)) is DONE
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(DONE, protocol=protocol)) is DONE
    assert copy.copy(DONE) is DONE
    assert copy.deepcopy([DONE])[0] is DONE
    assert repr(DONE) == "DONE"


def test_put_some_puts_what_fits_in_order_and_never_waits(channel, rejected):
    assert channel.put_some([1, 2, 3]) == 2  # channel: maxsize 2
    assert [take(channel), take(channel)] == [1, 2]
    assert channel.put_some([]) == 0

    channel.close()

    assert channel.put_some([4, 5]) == 2  # refused, and recorded: dealt with
    assert rejected == [4, 5]


def test_put_nowait_never_waits(channel):
    assert channel.put_nowait(1) is True
    assert channel.put_nowait(2) is True
    assert channel.put_nowait(3) is None  # full: nothing done
    assert channel.qsize() == 2 and [take(channel), take(channel)] == [1, 2]


def test_preload_goes_beyond_maxsize_and_counts(channel):
    assert channel.preload(range(5)) == 5
    assert channel.qsize() == 5 and channel.high_water == 5
    assert (channel.put_count, channel.preloaded) == (0, 5)  # put counts what producers put
    assert [take(channel) for _ in range(5)] == [0, 1, 2, 3, 4]


def test_freeze_takes_out_what_is_queued_and_lets_nothing_through(channel, rejected):
    channel.put(1)
    channel.put(2)
    putter = Call(lambda: channel.put(3))
    putter.assert_blocked(channel)

    assert channel.freeze() == [1, 2]

    # Frozen: a put waits even though there is room now (one made after the freeze too, which has seen the
    # room), and a get finds nothing, for good.
    putter.assert_blocked(channel)
    late = Call(lambda: channel.put(4))
    late.assert_blocked(channel)
    assert channel.qsize() == 0 and channel.get_count == 2
    with pytest.raises(Empty):
        take(channel, 0.05)
    with pytest.raises(Empty):
        channel.get(timeout_s=0)  # nor does a get that does not wait
    assert rejected == []
    channel.close()  # only to end the test's threads: the blocked puts are refused
    assert putter.outcome() is False and late.outcome() is False and sorted(rejected) == [3, 4]
