"""When a Redis queue has ended, on positive proof and never on idleness: every group writing to it has
ended, every entry was delivered, and none is pending anywhere.

A group that reads a Redis queue has ended when that queue has ended (its outputs were written with the
acknowledgements, so an acknowledged input is a written output). A group that reads a local queue ended
when every process that runs it has said so, or died (its heartbeat expired), and at least one ran it. A
source's input values are a Redis queue of their own, written once for the whole run. Proven facts are
kept in Redis (`closed:<queue>`), so every process need not prove them again.
"""

from __future__ import annotations

import logging
from typing import Any

from core.transport.redis.client import RedisRun
from core.transport.redis.members import Members

logger = logging.getLogger(__name__)


class RedisEnds:
    """Answers "has this Redis queue ended?" for the run, and says what it waits for when not."""

    def __init__(self, run: RedisRun, spec: Any, inputs: dict[str, str], redis_queues: dict[str, Any]) -> None:
        self.run = run
        self.members = Members(run)
        self.spec = spec
        self.inputs = inputs  # group -> the name of the queue it reads (a source: its values queue)
        self.queues = redis_queues  # name -> RedisQueue, for every Redis queue of the pipeline
        self._closed: set[str] = set()

    def ended(self, name: str) -> bool:
        """Nothing more will be added to queue `name`, and everything in it was delivered and settled."""
        return self.closed(name) and self.drained(name)

    def closed(self, name: str) -> bool:
        """No group will add to queue `name` any more."""
        if name in self._closed:
            return True
        flag = self.run.key("closed", name)
        if self.run.call(lambda: self.run.redis.exists(flag)):
            self._closed.add(name)
            return True
        producers = [worker.name for worker in self.spec.workers if name in worker.output_queues]
        if producers and all(self.group_done(group) for group in producers):
            self.run.call(lambda: self.run.redis.set(flag, "1"))
            self._closed.add(name)
            return True
        return False

    def group_done(self, group: str) -> bool:
        """`group` will write nothing more, anywhere."""
        source = self.inputs[group]
        if source in self.queues:
            return self.ended(source)
        return self.members.group_ended(group)

    def delivered(self, name: str) -> bool:
        """Queue `name` is closed and every entry was delivered (some may still be in hand)."""
        return self.closed(name) and self.drained(name, pending_too=False)

    def drained(self, name: str, *, pending_too: bool = True) -> bool:
        """Every entry of queue `name` was delivered to its group and none is pending."""
        queue = self.queues[name]

        def snapshot() -> tuple[Any, Any]:
            with self.run.redis.pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(queue.key)
                pipe.xinfo_groups(queue.key)
                return tuple(pipe.execute())

        stream, groups = self.run.call(snapshot)
        group = next((g for g in groups if _text(g["name"]) == queue.group), None)
        if group is None:
            return False
        delivered = _text(group["last-delivered-id"]) == _text(stream["last-generated-id"])
        return delivered and (not pending_too or int(group["pending"]) == 0)

    def waiting_for(self, name: str) -> str:
        """What queue `name` waits for before it can end, in words."""
        if not self.closed(name):
            for worker in self.spec.workers:
                if name in worker.output_queues and not self.group_done(worker.name):
                    source = self.inputs[worker.name]
                    if source in self.queues:
                        return f"{worker.name} (it reads {source}: {self.waiting_for(source)})"
                    return self.members.waiting_for(worker.name)
        queue = self.queues[name]
        groups = self.run.call(lambda: self.run.redis.xinfo_groups(queue.key))
        group = next((g for g in groups if _text(g["name"]) == queue.group), None)
        pending = int(group["pending"]) if group else 0
        return f"{pending} entries of {name} in hand somewhere" if pending else f"{name} to be read to its end"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
