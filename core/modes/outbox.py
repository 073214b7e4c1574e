"""What a worker process (core/modes/child.py) sends to the parent, and how: one thread sends the messages in
batches down the pipe (Outbox), the process's log records among them (PipeLogHandler). The parent takes them in
(core/modes/unit_reports.py)."""

from __future__ import annotations

import logging
import os
import pickle
import threading
import traceback
from collections.abc import Callable
from typing import Any

from core.transport.base import notify

logger = logging.getLogger(__name__)

#: Messages waiting to go to the parent before an emitting instance waits (memory stays bounded when the
#: parent cannot keep up, e.g. behind a full downstream queue).
OUTBOX_LIMIT = 4096


class Outbox:
    """Messages for the parent, sent in batches by one thread: whatever piled up while the last batch was
    being sent goes in the next one, so a busy process sends few large messages and an idle one at once."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._messages: list[tuple] = []
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._closed = False
        #: Items whose outputs could not be pickled: their later outputs are dropped (they are dead letters).
        self.unsent: set[int] = set()
        #: (busy_s, blocked_s) of this process's instances so far, sent with each batch.
        self.busy: Callable[[], tuple[float, float]] = lambda: (0.0, 0.0)
        self.thread = threading.Thread(target=self._send_loop, name="outbox", daemon=True)

    def add(self, message: tuple, *, wait: bool = True) -> bool:
        """Queue one message; with `wait`, wait while OUTBOX_LIMIT are queued. False if it would have to wait."""
        with self._lock:
            while wait and len(self._messages) >= OUTBOX_LIMIT and not self._closed:
                self._room.wait()
            if not wait and len(self._messages) >= OUTBOX_LIMIT:
                return False
            self._messages.append(message)
            notify(self._ready)  # the sender, if it waits; if it is sending, it takes this one next
            return True

    def close(self) -> None:
        """Send what is queued, then end the sending thread."""
        with self._lock:
            self._closed = True
            self._ready.notify()
        self.thread.join()

    def _pickled(self, batch: list[tuple]) -> bytes:
        """The batch pickled at once. An output that cannot be pickled makes its item a dead letter (the item
        came through the pipe, so it can go back in the record), and the item's later outputs are dropped."""
        if not self.unsent:
            try:
                return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - find the messages at fault below
                pass
        kept = []
        for message in batch:
            kind, seq = message[0], message[1]
            if kind in ("emit", "part") and seq in self.unsent:
                if kind == "emit":
                    self.unsent.discard(seq)
                continue
            try:
                pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - only an output can fail here: the rest is plain data
                if kind == "part":
                    self.unsent.add(seq)
                # The parent logs it, naming the item and the group (here the item is only a number).
                message = (
                    "unsent",
                    seq,
                    f"ItemError: its output cannot be sent out of the worker process "
                    f"(pickle: {type(exc).__name__}: {exc})",
                )
            kept.append(message)
        return pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL)

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                while not self._messages and not self._closed:
                    self._ready.wait()
                batch, self._messages = self._messages, []
                self._room.notify_all()
                closing = self._closed
            if batch:
                batch.append(("busy", *self.busy()))
                try:
                    self.conn.send_bytes(self._pickled(batch))
                except OSError:  # the parent is gone: nothing is left to report to
                    os._exit(1)
            if closing and not batch:
                return


class PipeLogHandler(logging.Handler):
    """Sends each log record to the parent, which logs it through its own handlers (format, masking, file)."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self.outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc_text = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else None
            self.outbox.add(("log", record.levelno, record.name, record.threadName, record.getMessage(), exc_text))
        except Exception:  # noqa: BLE001 - logging must never take the process down
            self.handleError(record)


def log_uncaught(args: threading.ExceptHookArgs) -> None:
    """threading.excepthook: an error that ended a thread goes to the log, and so to the parent."""
    error = args.exc_value
    logger.critical(
        "uncaught error in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, error, args.exc_traceback) if error is not None else None,
    )
