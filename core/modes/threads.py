"""Where a group's instances run in this process: one thread each (here), or asyncio tasks on one event loop
(core/modes/tasks.py, loaded only by a run that has such a group).

Both drive the same core.run.loop.Instance; they differ only in how they start it and hand it items.
"""

from __future__ import annotations

import logging
import threading
import time

from core.run.loop import Inbox, Instance
from core.transport.base import Delivery

logger = logging.getLogger(__name__)


class ThreadRunner:
    """Each instance in a thread of its own, named like the instance (`<group>-<index>`)."""

    mode = "threads"

    def __init__(self, instances: list[Instance], inbox: Inbox) -> None:
        self.instances = instances
        self.inbox = inbox
        self.size = self.readers = len(instances)  # instances; DONEs its input needs
        self.threads = [
            threading.Thread(target=instance.run, args=(inbox,), name=instance.name, daemon=True)
            for instance in instances
        ]

    def start(self) -> None:
        """Start every instance."""
        for thread in self.threads:
            thread.start()

    def alive(self) -> int:
        """How many instances are running."""
        return sum(1 for thread in self.threads if thread.is_alive())

    def join(self, timeout_s: float | None) -> bool:
        """Wait for every instance, `timeout_s` in all (None: as long as it takes); True when none is left running."""
        return join_all(self.threads, timeout_s)

    def in_hand(self) -> list[Delivery]:
        """Nothing beyond what the instances hold."""
        return []

    def stop(self, close_input: bool) -> None:
        """The instances see the group's stop event (and their input queue closed) themselves."""

    def open_group(self) -> None:
        """Instance 0 opens the group."""
        self.instances[0].worker.open_group()


def join_all(threads: list[threading.Thread], timeout_s: float | None) -> bool:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for thread in threads:
        if thread.ident is not None:  # never started (the run could not start): nothing to wait for
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
    return not any(thread.is_alive() for thread in threads)
