"""Telling a blocked thread from a slow one, for tests that must show a call waits.

Joining a thread for a moment and finding it alive shows nothing on a loaded machine: the thread may not
even have reached the call yet. A thread is shown blocked when it is parked in a `threading.Condition.wait()`
that a method of the object it waits on called, and nothing has notified it since it began that wait: it
has looked at the object's state, found it must wait, and only a notify (or its own timeout) moves it on.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

PARK_TIMEOUT_S = 5.0
POLL_S = 0.002
_CONDITION_WAIT = threading.Condition.wait.__code__


def parked_in(thread: threading.Thread, owner: Any) -> bool:
    """True if `thread` waits in a Condition.wait() called by a method of `owner`, not notified since."""
    frame = sys._current_frames().get(thread.ident)  # noqa: SLF001 - the only view of another thread's stack
    while frame is not None:
        caller = frame.f_back
        if frame.f_code is _CONDITION_WAIT and caller is not None and caller.f_locals.get("self") is owner:
            condition, waiter = frame.f_locals.get("self"), frame.f_locals.get("waiter")
            # notify() takes a waiter off the condition's list as it wakes it: still listed, not woken.
            return waiter is not None and waiter in condition._waiters  # noqa: SLF001
        frame = caller
    return False


def wait_parked(thread: threading.Thread, owner: Any, timeout_s: float = PARK_TIMEOUT_S) -> None:
    """Wait until `thread` is parked in a wait of `owner` (parked_in); fail if it ends first or never parks. A
    thread not started yet is waited for (a runner starts its threads one by one: on a loaded machine the last
    may start after the others have done all there was to do)."""
    deadline = time.monotonic() + timeout_s
    while not parked_in(thread, owner):
        assert thread.is_alive() or thread.ident is None, f"{thread.name} ended instead of waiting in {owner!r}"
        assert time.monotonic() < deadline, f"{thread.name} is not waiting in {owner!r} after {timeout_s}s"
        time.sleep(POLL_S)
