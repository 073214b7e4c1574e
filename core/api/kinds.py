"""What kind of class a worker group's class is, and so where its instances run: the Worker API's (threads, or
asyncio tasks for an `async def process`, in worker processes with `processes: P`), or a course-style
`threading.Thread` subclass that runs its own loop."""

from __future__ import annotations

import threading
from typing import Any

from core.api.worker import Worker, is_async

#: Keyword arguments the runner passes to a course-style class; they cannot be params.
RUNNER_KWARGS = ("input_queue", "output_queue", "input_values")


def is_course_class(cls: Any) -> bool:
    """True for a `threading.Thread` subclass that is not a Worker: a course-style worker class."""
    return isinstance(cls, type) and issubclass(cls, threading.Thread) and not issubclass(cls, Worker)


def describe_mode(spec: Any, cls: type) -> str:
    """Where a group's instances will run, for --check and --graph: '4 threads', '128 asyncio tasks',
    '2 processes x 16 asyncio tasks'."""
    per = (
        f"{spec.instances} asyncio task{'s' * (spec.instances != 1)}"
        if is_async(cls)
        else f"{spec.instances} thread{'s' * (spec.instances != 1)}"
    )
    return f"{spec.processes} process{'es' * (spec.processes != 1)} x {per}" if spec.processes else per
