"""Worker classes written the way the course "Concurrent Programming in Python" writes them: threading.Thread
subclasses built with keyword arguments (input_queue, output_queue, input_values), which pop what they do not
use, start themselves in __init__, loop on get(timeout=...) until the string 'DONE', and put each output on
every output queue. What a sink receives goes to a registry under its `key` param, for the test to check.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from queue import Empty
from typing import Any

_lock = threading.Lock()
_rows: dict[str, list[Any]] = defaultdict(list)
_gates: dict[str, threading.Event] = defaultdict(threading.Event)
#: A gate nobody opens lets its worker go after this long, so a failing test cannot hang the run.
GATE_TIMEOUT_S = 20.0


def collected(key: str) -> list[Any]:
    """What the sinks under `key` have received so far."""
    with _lock:
        return list(_rows[key])


def gate(name: str) -> threading.Event:
    """The gate `name`, which a CourseHolder waits on while it holds an item."""
    with _lock:
        return _gates[name]


def forget(key: str) -> None:
    """Drop what was recorded under `key`, and its gate."""
    with _lock:
        _rows.pop(key, None)
        _gates.pop(key, None)


def _as_list(output_queue: Any) -> list[Any]:
    """The course accepts one queue or a list of them."""
    if output_queue is None:
        return []
    return output_queue if isinstance(output_queue, list) else [output_queue]


class CourseRelay(threading.Thread):
    """A middle stage: passes each value on; stops on 'DONE', or when nothing came for timeout_s (the course's 10 s)."""

    starts_itself = True

    def __init__(self, **kwargs):
        self._input_queue = kwargs.pop("input_queue")
        self._output_queues = _as_list(kwargs.pop("output_queue"))
        self._timeout_s = kwargs.pop("timeout_s", 10)
        kwargs.pop("input_values", None)
        super().__init__(**kwargs)
        if self.starts_itself:
            self.start()

    def run(self):
        while True:
            try:
                value = self._input_queue.get(timeout=self._timeout_s)
            except Empty:
                print("Timeout reached in course relay, stopping")
                break
            if value == "DONE":
                break
            for output_queue in self._output_queues:
                output_queue.put(value)


class CoursePriceSink(threading.Thread):
    """A sink: records each price record as the course's row, [symbol, price, extracted_time]."""

    def __init__(self, input_queue, key, **kwargs):
        self._input_queue = input_queue
        self._key = key
        kwargs.pop("output_queue", None)
        super().__init__(**kwargs)
        self.start()

    def run(self):
        while True:
            try:
                value = self._input_queue.get(timeout=10)
            except Empty:
                print("Timeout reached in course sink, stopping")
                break
            if value == "DONE":
                break
            row = [value["symbol"], value["price"], value["extracted_time"]]
            with _lock:
                _rows[self._key].append(row)


class CourseSource(threading.Thread):
    """A source: puts each of its input_values; fails on `crash_on` (after putting the values before it)."""

    def __init__(self, output_queue, input_values, crash_on=None, **kwargs):
        self._output_queues = _as_list(output_queue)
        self._input_values = input_values
        self._crash_on = crash_on
        kwargs.pop("input_queue", None)
        super().__init__(**kwargs)
        self.start()

    def run(self):
        for value in self._input_values:
            if value == self._crash_on:
                raise RuntimeError(f"course source cannot handle {value!r}")
            for output_queue in self._output_queues:
                output_queue.put(value)


class CourseCrasher(CourseRelay):
    """A middle stage whose run() raises on the value `crash_on`, holding it."""

    def __init__(self, crash_on=2, **kwargs):
        self._crash_on = crash_on
        super().__init__(**kwargs)

    def run(self):
        while True:
            value = self._input_queue.get(timeout=self._timeout_s)
            if value == "DONE":
                break
            if value == self._crash_on:
                raise ValueError(f"cannot handle {value!r}")
            for output_queue in self._output_queues:
                output_queue.put(value)


class CourseEmptyPoller(CourseRelay):
    """The course's other loop: get only `if not queue.empty()`, so 'DONE' must show in empty()."""

    def run(self):
        while True:
            if self._input_queue.empty():
                time.sleep(0.01)
                continue
            value = self._input_queue.get(timeout=self._timeout_s)
            if value == "DONE":
                for output_queue in self._output_queues:
                    output_queue.put("DONE")  # the course passes DONE on itself; the runner sends its own
                break
            for output_queue in self._output_queues:
                output_queue.put(value)


class CourseHolder(CourseRelay):
    """A middle stage that holds each value until the gate `key` opens, then passes it on."""

    def __init__(self, key, **kwargs):
        self._gate = gate(key)
        super().__init__(**kwargs)

    def run(self):
        while True:
            value = self._input_queue.get()
            if value == "DONE":
                break
            self._gate.wait(GATE_TIMEOUT_S)
            for output_queue in self._output_queues:
                output_queue.put(value)


class CourseLazyRelay(CourseRelay):
    """A relay that does not start itself in __init__ (the runner starts it)."""

    starts_itself = False
