"""Where a group's instances run, chosen from its spec and class: threads, asyncio tasks, worker processes,
or a course-style thread class's own loop; and how its items leave (core/run/exits.py, or core/run/redis_exits.py
for a Redis input)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.api.kinds import is_course_class
from core.api.worker import is_async
from core.modes.threads import ThreadRunner
from core.run.hand import ErrorLog
from core.run.loop import Instance
from core.transport.base import is_shared


def exits_for(group: Any) -> Any:
    """How a group's items leave: settled with a Redis input (core/run/redis_exits.py), or put on locally
    (core/run/exits.py)."""
    if is_shared(group.input):
        from core.run.redis_exits import RedisExits

        return RedisExits(group)
    from core.run.exits import LocalExits

    return LocalExits(group)


def make_runner(group: Any, cls: type, *, on_exit: Callable[[Any], None], pipeline_path: str) -> Any:
    """Where a group's instances run: worker processes (`processes: P`), asyncio tasks (an `async def
    process`), or threads. Raises what the class raises when it refuses its params."""
    from core.modes.course import CourseRunner

    if is_course_class(cls):  # a course-style threading.Thread subclass: its own loop, in threads
        return CourseRunner(group, cls, on_exit=on_exit)
    if group.spec.processes:
        from core.modes.processes import ProcessRunner

        return ProcessRunner(group, cls, exits=exits_for(group), pipeline_path=pipeline_path, on_exit=on_exit)
    exits, errors = exits_for(group), ErrorLog()  # the group's instances share how often each error was logged
    instances = [
        Instance(
            cls(group=group, index=index, **group.spec.params),
            exits=exits,
            stop=group.stop,
            on_exit=on_exit,
            errors=errors,
        )
        for index in range(group.spec.instances)
    ]
    if is_async(cls):
        from core.modes.tasks import AsyncRunner

        return AsyncRunner(instances, group.input, close_resources=group.aclose)
    return ThreadRunner(instances, group.input)
