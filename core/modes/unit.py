"""One worker process of a group, seen from the parent (core/modes/processes.py runs the group's): started here,
fed by a thread (core/modes/unit_feed.py), its pipe read by another (what it reports: core/modes/unit_reports.py),
its books kept here (core/modes/unit_books.py); and when it dies, what its instances held dead-lettered and a
replacement started with the rest.
"""

from __future__ import annotations

import logging
import pickle
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from core.modes.child import ChildSpec, child_main
from core.modes.unit_books import WINDOW_MAX, UnitBooks
from core.modes.unit_feed import Feeder
from core.modes.unit_reports import Reports
from core.transport.base import Delivery

logger = logging.getLogger(__name__)

MAX_RESTARTS = 3  # per worker process: replacements in a row that died having neither finished nor held an item
PIPE_CLOSED_GRACE_S = 1.0  # a process whose pipe closed without its goodbye has this long to exit, then is killed
JOIN_TIMEOUT_S = 5.0


class Runner(Protocol):
    """What a unit sees of its group's runner (core.modes.processes.ProcessRunner)."""

    group: Any
    exits: Any
    context: Any  # the multiprocessing context
    units: list[Unit]
    batching: bool
    window: int  # a unit's first window
    stopping: bool
    stop_message: tuple
    on_exit: Callable[[Any], None]

    def child_spec(self, unit: int) -> ChildSpec:
        """What worker process `unit` is started with."""


class Unit:
    """One worker process of a group and its books, kept here: sent, taken, settled."""

    def __init__(self, runner: Runner, number: int) -> None:
        self.runner = runner
        self.number = number
        self.name = f"{runner.group.name}-p{number}"
        self.batching = runner.batching
        self.restarts = 0
        self.process: Any = None
        self.conn: Any = None
        self._ended_why: str | None = None  # why the runner killed the process, when it did
        self._send_lock = threading.Lock()  # one sender at a time, and no send while a process is replaced
        # The seqs of the items its instances are working on (core/modes/child.py Slots), one slot per item it
        # may be sent.
        slots = runner.context.RawArray("q", max(runner.window, WINDOW_MAX))
        self.books = UnitBooks(runner.group, runner.exits, window=runner.window, slots=slots)
        self.counts = self.books.counts
        self.reports = Reports(self.name, self.books, runner.exits)
        self.feeder = Feeder(self.name, self.books, runner.group.input, send=self._send, send_lock=self._send_lock)
        self.reader = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)

    @property
    def finished(self) -> bool:
        """The unit is over: its process ended and was not replaced."""
        return self.books.finished

    @property
    def crash(self) -> BaseException | None:
        """The first crash of an instance in its processes, or of a process."""
        return self.reports.crash

    @property
    def crashes(self) -> int:
        """How many instances in its processes crashed, and processes died."""
        return self.reports.crashes

    def in_hand(self) -> list[Delivery]:
        """Items sent to the process and not settled, and those on their way to it."""
        return self.books.in_hand()

    def give_up(self) -> list[Delivery]:
        """For a forced exit: what the process was sent and not settled; from now on nothing is recorded."""
        return self.books.give_up()

    # --- the process ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker process, then the threads that read its pipe and feed it."""
        with self._send_lock:
            self._spawn()
        self.reader.start()
        self.feeder.thread.start()

    def _spawn(self) -> None:
        parent_end, child_end = self.runner.context.Pipe(duplex=True)
        slots = self.books.slots
        slots[:] = [-1] * len(slots)  # the previous process (if any) is dead: nothing else writes them
        self.reports.new_process()
        self.process = self.runner.context.Process(
            target=child_main, args=(self.runner.child_spec(self.number), child_end, slots), name=self.name, daemon=True
        )
        self.process.start()
        child_end.close()
        self.conn = parent_end
        logger.info("%s: worker process started (pid %s)", self.name, self.process.pid)
        if self.runner.stopping:
            self._send(pickle.dumps(self.runner.stop_message))

    def join(self, deadline: float) -> None:
        """Wait for its threads and its process until `deadline` (time.monotonic); kill the process after it."""
        for thread in (self.feeder.thread, self.reader):
            if thread.ident is not None:
                thread.join(max(deadline - time.monotonic(), 0))
        process = self.process
        if process is not None and process.is_alive():
            process.join(max(deadline - time.monotonic(), 0))
            if process.is_alive():
                logger.error("%s (pid %s) did not end in time; killing it", self.name, process.pid)
                process.kill()
                process.join(JOIN_TIMEOUT_S)

    def send_message(self, message: tuple) -> None:
        """Send `message` to the process (one of core/modes/child.py's _receive)."""
        with self._send_lock:
            self._send(pickle.dumps(message))

    def _send(self, data: bytes) -> None:
        if self.conn is None:
            return  # not started yet: _spawn sends what it must (the stop)
        try:
            self.conn.send_bytes(data)
        except OSError:
            pass  # the process died: the reader sees it, and what was sent goes to its replacement

    def _read(self) -> None:
        while True:
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                if self._process_ended():
                    continue  # a replacement is running: read its pipe
                return
            try:
                self.reports.handle_batch(pickle.loads(data))
            except Exception:  # noqa: BLE001 - a bug of ours must not leave the run waiting for this process
                logger.critical(
                    "%s: what worker process pid %s sent could not be handled; ending it as if it had died",
                    self.name,
                    self.process.pid,
                    exc_info=True,
                )
                self._ended_why = "ended by the runner: what it sent could not be handled"
                self.process.kill()  # the pipe's EOF follows: what it held is dead-lettered, a replacement starts

    # --- when the process ends ------------------------------------------------------------------------

    def _process_ended(self) -> bool:
        """The pipe closed. After "bye" the process is done; otherwise it died: dead-letter what its
        instances had taken and start a replacement for the rest. True when a replacement runs."""
        process = self.process
        why = self._stopped(process)
        with self._send_lock:
            if self.reports.bye:
                self._give_back()
                self._end("no instance of the worker process was left to take it (they had crashed)")
                return False
            why, self._ended_why = self._ended_why or why, None
            held, _ = self.books.split()
            logger.error(
                "%s (pid %s) died (%s) holding %d item(s); they are dead-lettered",
                self.name,
                process.pid,
                why,
                len(held),
            )
            for seq in held:
                self.books.dead(
                    seq,
                    f"crashed: worker process {self.name} died ({why}) with this item in hand",
                    attempts=1,
                    kind="crashed",
                )
            self.reports.crashed(f"worker process {self.name} died ({why})")
            self.restarts = 0 if self.reports.progress else self.restarts + 1
            if self.restarts > MAX_RESTARTS or self.runner.stopping:
                self._give_back()
                self._end(
                    f"worker process {self.name} died ({why}) and was not replaced "
                    + (
                        "(the run is stopping)"
                        if self.runner.stopping
                        else f"({MAX_RESTARTS + 1} in a row died before finishing an item)"
                    )
                )
                return False
            self._spawn()
            waiting = self.books.waiting()
            logger.warning(
                "%s: replaced by pid %s (restart %d in a row without an item finished, of %d); "
                "%d item(s) it was sent and not working on sent to it",
                self.name,
                self.process.pid,
                self.restarts,
                MAX_RESTARTS,
                len(waiting),
            )
            if waiting:
                pairs = [(seq, delivery.item) for seq, delivery in waiting]
                self._send(pickle.dumps(("pairs", pairs), protocol=pickle.HIGHEST_PROTOCOL))
            if self.feeder.done_sent:
                self._send(pickle.dumps(("done",)))
            return True

    def _stopped(self, process: Any) -> str:
        """The pipe closed: wait for the process to be gone, killing it if it lingers, and say why it ended.
        After its goodbye it is exiting; without one, a process still running with its pipe closed is killed
        at once (after a moment for an exit under way): nothing may finish items the runner gives up on."""
        process.join(JOIN_TIMEOUT_S if self.reports.bye else PIPE_CLOSED_GRACE_S)
        if not process.is_alive():
            return _died(process.exitcode)
        logger.error(
            "%s (pid %s) is still running after its pipe to the runner closed; killing it", self.name, process.pid
        )
        process.kill()
        process.join(JOIN_TIMEOUT_S)
        return "its pipe to the runner closed while it still ran; killed"

    def _give_back(self) -> None:
        """The process ended with items no instance had taken: they go back to the group's input for its
        other processes, if any is still running."""
        if not any(unit is not self and not unit.finished for unit in self.runner.units):
            return
        _, untaken = self.books.split()
        left = self.books.take_back(untaken)
        if left:
            logger.warning(
                "%s: %d item(s) its instances never took go back to the group's other processes", self.name, len(left)
            )
            self.runner.group.input.give_back(left)

    def _end(self, why_left: str) -> None:
        """Under the send lock: the unit is over; what it still holds is dead-lettered."""
        self.books.end(why_left)
        self.conn.close()
        self.runner.on_exit(self)


def _died(exitcode: int | None) -> str:
    """Why a process that is gone ended, from its exit code."""
    if exitcode is None:
        return "still running after its pipe closed"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
