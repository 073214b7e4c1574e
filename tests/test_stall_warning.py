"""A process of a split run that makes no progress says what it waits for (it printed only "0/503 done (0%)" for
80 s with 503 items waiting and no process running the stage before it). The warning's delay, STALL_WARN_S in
core/run/distributed.py, is set short here."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from main_process import THREE_OVER_REDIS

from core.app.executor import YamlPipelineExecutor

TIMEOUT_S = 30.0

PIPELINE = THREE_OVER_REDIS.format(maxsize=10, values=[1, 2, 3], sink="Collect", key="stall")


class Waiting(logging.Handler):
    """Sets `seen` once a warning says what the run waits for."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "no progress" in record.getMessage():
            self.messages.append(record.getMessage())
            self.seen.set()


def test_a_stalled_process_says_which_group_it_waits_for(tmp_path):
    path = tmp_path / "split.yaml"
    path.write_text(PIPELINE)
    executor = YamlPipelineExecutor(
        path, dead_letter_path=tmp_path / "dl.jsonl", run_id=f"stall-{uuid.uuid4().hex[:8]}", only=["Source", "Sink"]
    )
    executor.distributed.stall_warn_s = 0.5
    handler = Waiting()
    logging.getLogger().addHandler(handler)
    try:
        executor.start()
        assert handler.seen.wait(TIMEOUT_S), "no warning said what the run waits for"
    finally:
        executor.request_stop()
        executor.join(TIMEOUT_S)
        logging.getLogger().removeHandler(handler)
    assert not executor.is_alive()

    [message] = handler.messages[:1]
    assert "Middle" in message and "no process has joined to run Middle (start one with --only Middle)" in message
    assert "3 waiting in Numbers" in message


def test_a_redis_queue_s_size_is_the_run_s_not_this_process_s_buffer(tmp_path):
    """Machine A showed `SymbolQueue 0/1000` while Redis held 503 unread entries: its own buffer, not the queue."""
    path = tmp_path / "split.yaml"
    path.write_text(PIPELINE)
    executor = YamlPipelineExecutor(
        path, dead_letter_path=tmp_path / "dl.jsonl", run_id=f"size-{uuid.uuid4().hex[:8]}", only=["Source"]
    )
    executor.start()
    try:
        source = executor.groups["Source"]
        deadline = time.monotonic() + TIMEOUT_S
        while not source.finished() and time.monotonic() < deadline:
            time.sleep(0.01)  # a group's end is not an event a test can wait on from outside
        assert source.finished()
        queues = {name: (size, pending, maxsize) for name, size, pending, maxsize in executor.snapshot().queues}
        executor.watch.point(time.monotonic())
        timeline = executor.watch.timeline.to_dict()["queues"]["Numbers"]
    finally:
        executor.request_stop()
        executor.join(TIMEOUT_S)
    assert not executor.is_alive()

    assert queues["Numbers"] == (3, 0, 10)  # three entries wait in Redis for a Middle no process runs yet
    assert timeline["size"][-1] == 3 and timeline["pending"][-1] == 0  # the timeline has the run's size too
