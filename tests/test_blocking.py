"""tests/blocking.py: a thread counts as blocked in an object only while parked in that object's wait and not
woken; alive alone (what a join of 0.2 s and is_alive() saw) is not enough."""

from __future__ import annotations

import threading

import pytest
from blocking import parked_in, wait_parked

JOIN_TIMEOUT_S = 5.0


class Box:
    """A thing to wait on: wait() returns once `ready`, re-waiting on any other wake-up."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.ready = False

    def wait(self) -> None:
        """Wait until ready."""
        with self.condition:
            while not self.ready:
                self.condition.wait()

    def open(self) -> None:
        """Ready: wake every waiter."""
        with self.condition:
            self.ready = True
            self.condition.notify_all()


def test_a_thread_is_parked_only_in_the_wait_of_the_object_it_waits_on():
    box, elsewhere = Box(), threading.Event()
    waiting = threading.Thread(target=box.wait, name="waiting")
    busy = threading.Thread(target=elsewhere.wait, name="busy")  # alive and waiting, but not in the box
    waiting.start()
    busy.start()
    try:
        wait_parked(waiting, box)
        wait_parked(busy, elsewhere)
        assert not parked_in(busy, box)
        with pytest.raises(AssertionError, match="busy is not waiting in"):
            wait_parked(busy, box, timeout_s=0.05)
    finally:
        box.open()
        elsewhere.set()
        waiting.join(JOIN_TIMEOUT_S)
        busy.join(JOIN_TIMEOUT_S)
    assert not waiting.is_alive() and not busy.is_alive()


def test_a_woken_thread_is_not_parked_until_it_waits_again():
    box = Box()
    waiting = threading.Thread(target=box.wait, name="waiting")
    waiting.start()
    try:
        wait_parked(waiting, box)
        with box.condition:  # held: the woken thread is still inside wait(), unable to leave it
            box.condition.notify()
            assert not parked_in(waiting, box)
        wait_parked(waiting, box)  # not ready: it looked again and went back to waiting
    finally:
        box.open()
        waiting.join(JOIN_TIMEOUT_S)
    assert not waiting.is_alive()


def test_a_thread_that_ends_instead_of_waiting_fails_the_check():
    box = Box()
    box.ready = True
    passing = threading.Thread(target=box.wait, name="passing")
    passing.start()
    with pytest.raises(AssertionError, match="passing ended instead of waiting"):
        wait_parked(passing, box)
    passing.join(JOIN_TIMEOUT_S)
    assert not passing.is_alive()
