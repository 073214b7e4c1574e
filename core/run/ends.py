"""Ends of a run in this process: DONE into each queue once every producer of it has ended (one per reader
instance), and a queue closed once every reader of it has ended (what waits there is dead-lettered). A Redis
queue ends by its own proof across processes (core/transport/redis/ends.py)."""

from __future__ import annotations

import logging
from typing import Any

from core.pipeline.specs import PipelineSpec
from core.run.group import WorkerGroup
from core.transport.base import is_shared

logger = logging.getLogger(__name__)


class Ends:
    """Which queues got their DONEs or were closed (`ended`), and what ends next as groups finish."""

    def __init__(self, spec: PipelineSpec, distributed: Any = None) -> None:
        self.spec = spec
        self.distributed = distributed  # core.run.distributed.Distributed, for a run over Redis
        self.ended: set[str] = set()

    def propagate(self, groups: dict[str, WorkerGroup], queues: dict[str, Any]) -> None:
        """DONE into each queue whose producers have all ended; close a queue whose readers all ended."""
        for group in groups.values():
            if group.finished() and not group.input.closed:
                refused = group.input.close()
                if refused:
                    logger.warning("%s: every instance has ended; %d queued item(s) dead-lettered", group.name, refused)
        if self.distributed is not None:
            for group in groups.values():
                if group.finished():
                    self.distributed.group_finished(group.name)
        for name, queue in queues.items():
            if name in self.ended or queue.closed or is_shared(queue):
                continue  # a Redis queue ends by its own proof (core/transport/redis/ends.py)
            reader = groups[self.spec.reader(name).name]
            if all(groups[w.name].finished() for w in self.spec.producers(name)):
                queue.put_done(reader.runner.readers)
                self.ended.add(name)
                logger.debug("%s: every producer ended; sent %d DONE", name, reader.runner.readers)
