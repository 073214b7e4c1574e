"""The parent side of `processes: P`: a group's instances in P worker processes (core/modes/child.py), fed
through one pipe each.

No queue is shared between processes, so no process death can wedge one: a multiprocessing.Queue's lock
is a semaphore with no owner, and a reader killed inside get() leaves it taken for good. Here each worker
process has its own duplex pipe, and in the parent a feeder thread moves items from the group's input
queue into it (in batches, at most `window` unsettled at a time) while a reader thread takes back what
the process reports: which item an instance took, its outputs (put downstream from here), batches
stored, dead letters (written from here, so every process's land in the one file), crashes, log records.

The parent keeps each process's books (a Unit), so nothing depends on a child living to report: items go
an instance of a worker process takes has a slot in memory shared with the parent until its outcome is on
its way back (core/modes/child.py Slots), so when a process dies the parent knows exactly what it held. Those items
are dead-lettered as crashed (a poison item costs only itself, after one delivery); the others it was sent
(not taken yet, or finished with their outcome lost with the process) go to a replacement, started at once. A process that dies before finishing or
holding any item is not replaced more than MAX_RESTARTS times in a row.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import pickle
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from core.api.worker import BatchWorker, flushes, holds, is_async
from core.base.errors import Returned
from core.modes.child import ChildSpec, child_main
from core.pipeline.imports import preload_modules
from core.pipeline.yaml_lines import plain
from core.run.ledger import Counts
from core.transport.base import NUDGE, Delivery, Empty, notify

logger = logging.getLogger(__name__)

START_METHOD = "forkserver"  # never fork a process that has threads
MAX_RESTARTS = 3  # per worker process: replacements in a row that died having neither finished nor held an item
PIPE_CLOSED_GRACE_S = 1.0  # a process whose pipe closed without its goodbye has this long to exit, then is killed
BATCH_MAX = 1024  # items per message to a worker process
WINDOW_MAX = 4096  # items sent and not yet settled, per worker process
JOIN_TIMEOUT_S = 5.0


class ChildCrash(Exception):
    """What ended a worker process, or an instance in it, as the parent learned it."""


class ProcessRunner:
    """A group's instances in `processes` worker processes, `instances` in each (threads or asyncio tasks)."""

    def __init__(
        self,
        group: Any,
        cls: type,
        *,
        exits: Any,
        pipeline_path: str,
        on_exit: Callable[[Any], None] = lambda unit: None,
    ) -> None:
        self.group = group
        self.cls = cls
        self.exits = exits  # how the items the processes report on leave: core.run.group / core.transport.redis.queue
        spec = group.spec
        self.inner = "async" if is_async(cls) else "threads"
        self.mode = f"processes ({spec.processes} x {spec.instances} {self.inner})"
        self.size = spec.processes * spec.instances
        self.pipeline_path = pipeline_path
        self.on_exit = on_exit
        self.first = cls(group=group, index=0, **spec.params)  # its params refused here, before anything starts
        # What the worker processes are sent: plain values, so that they never load the config stack (PyYAML).
        self.worker_spec = dataclasses.replace(
            spec, **{field.name: plain(getattr(spec, field.name)) for field in dataclasses.fields(spec)}
        )
        self.batch_size = holds(self.first)  # items an instance may hold processed and unsettled
        self.stopping = False
        self.stop_message = ("stop", False)
        self.context = multiprocessing.get_context(START_METHOD)
        self.units = [Unit(self, number) for number in range(spec.processes)]
        self.instances = self.units
        self.readers = len(self.units)  # each process takes one DONE from the group's input

    def open_group(self) -> None:
        """Let instance 0, built here, open the group."""
        self.first.open_group()

    def start(self) -> None:
        """Start every worker process (workers are built in them from the spec, never forked)."""
        modules = [
            "core.modes.child",
            "core.run.loop",
            "core.modes.threads",
            self.group.spec.location,
            *preload_modules(type(self.first)),
        ]
        if self.inner == "async":
            modules.append("core.modes.tasks")  # and with it asyncio, which a threads-only runner never loads
        self.context.set_forkserver_preload(modules)  # imported once in the fork server, not per process
        for unit in self.units:
            unit.start()

    def alive(self) -> int:
        """Instances in worker processes that are running."""
        return sum(self.group.spec.instances for unit in self.units if unit.process is not None and not unit.finished)

    def join(self, timeout_s: float) -> bool:
        """Wait for every worker process and its threads, `timeout_s` in all; kill what is left after it."""
        deadline = time.monotonic() + timeout_s
        for unit in self.units:
            unit.join(deadline)
        return all(unit.finished or unit.process is None for unit in self.units)

    def in_hand(self) -> list[Delivery]:
        """What the units hold is theirs (group.instances lists them)."""
        return []

    def stop(self, close_input: bool) -> None:
        """Tell every worker process the run is stopping: its batch retries stop waiting, and with
        `close_input` (not a sink) the items it was sent and no instance took are dead-lettered."""
        self.stopping = True
        self.stop_message = ("stop", close_input)
        for unit in self.units:
            unit.send_message(self.stop_message)


class Unit:
    """One worker process of a group and its books, kept here: sent, taken, settled."""

    batching = False

    def __init__(self, runner: ProcessRunner, number: int) -> None:
        self.runner = runner
        self.number = number
        self.name = f"{runner.group.name}-p{number}"
        self.batching = issubclass(runner.cls, BatchWorker) or flushes(runner.cls)
        self.counts = Counts()
        self.crash: BaseException | None = None
        self.crashes = 0
        self.finished = False
        self.restarts = 0
        self._ended_why: str | None = None  # why the runner killed the process, when it did
        self.process: Any = None
        self.conn: Any = None
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        # Recording an item (its dead letter, its counts) and giving up at a forced exit exclude each other, so
        # that each item is recorded once; never held while outputs wait for room downstream.
        self._recording = threading.RLock()
        self._given_up = False
        self._send_lock = threading.Lock()  # one sender at a time, and no send while a process is replaced
        self._outstanding: dict[int, Delivery] = {}  # seq -> delivery: sent, not settled
        self._transit: list[Any] = []  # taken from the group's input by the feeder, not yet numbered and sent
        self._progress = True  # the current process finished an item (a replacement is then worth it)
        self._next_seq = 0
        # Items in flight at most: from 2 per instance (a slow stage's items stay spread over its processes)
        # doubling whenever the process runs out of work while more waits (a fast stage gets big batches);
        # a batching sink's instances must be able to fill their batches (a flushing one's, its flush_every).
        instances = runner.group.spec.instances
        self.window = instances * (runner.batch_size + 1 if self.batching else 2)
        # The seqs of the items its instances are working on (core/modes/child.py Slots), one slot per item it may be sent.
        self._slots = runner.context.RawArray("q", max(self.window, WINDOW_MAX))
        self._done_sent = False
        self._bye = False
        self._busy_before = (0.0, 0.0)  # busy and blocked seconds of processes this unit had before
        self.feeder = threading.Thread(target=self._feed, name=f"{self.name}-feeder", daemon=True)
        self.reader = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)

    # --- the process ---------------------------------------------------------------------------------

    def start(self) -> None:
        with self._send_lock:
            self._spawn()
        self.reader.start()
        self.feeder.start()

    def _spawn(self) -> None:
        spec = ChildSpec(
            worker=self.runner.worker_spec,
            pipeline_path=self.runner.pipeline_path,
            unit=self.number,
            log_level=logging.getLogger().getEffectiveLevel(),
            mode=self.runner.inner,
            json_outputs=any(getattr(queue, "is_redis", False) for queue in self.runner.group.outputs),
        )
        parent_end, child_end = self.runner.context.Pipe(duplex=True)
        self._slots[:] = [-1] * len(self._slots)  # the previous process (if any) is dead: nothing else writes them
        self._progress = False
        self.process = self.runner.context.Process(
            target=child_main, args=(spec, child_end, self._slots), name=self.name, daemon=True
        )
        self.process.start()
        child_end.close()
        self.conn = parent_end
        logger.info("%s: worker process started (pid %s)", self.name, self.process.pid)
        self._bye = False
        if self.runner.stopping:
            self._send(pickle.dumps(self.runner.stop_message))

    def join(self, deadline: float) -> None:
        for thread in (self.feeder, self.reader):
            if thread.ident is not None:
                thread.join(max(deadline - time.monotonic(), 0))
        process = self.process
        if process is not None and process.is_alive():
            process.join(max(deadline - time.monotonic(), 0))
            if process.is_alive():
                logger.error("%s (pid %s) did not end in time; killing it", self.name, process.pid)
                process.kill()
                process.join(JOIN_TIMEOUT_S)

    def in_hand(self) -> list[Delivery]:
        """Items sent to the process and not settled, and those on their way to it."""
        with self._lock:
            return list(self._outstanding.values()) + _deliveries(self._transit)

    def give_up(self) -> list[Delivery]:
        """For a forced exit: the items sent to the process and not settled, which the exit records; from now
        on nothing the process reports is recorded (an item it finishes after this may have been completed)."""
        with self._recording, self._lock:
            self._given_up = True
            transit = _deliveries(self._transit)
            self.counts.received += len(transit)  # taken from the group's input: received, as sent ones are
            left = list(self._outstanding.values()) + transit
            self._outstanding.clear()
            self._transit = []
            self._room.notify_all()
        return left

    def send_message(self, message: tuple) -> None:
        with self._send_lock:
            self._send(pickle.dumps(message))

    def _send(self, data: bytes) -> None:
        if self.conn is None:
            return  # not started yet: _spawn sends what it must (the stop)
        try:
            self.conn.send_bytes(data)
        except OSError:
            pass  # the process died: the reader sees it, and what was sent goes to its replacement

    # --- feeding ---------------------------------------------------------------------------------------

    def _feed(self) -> None:
        inbox = self.runner.group.input
        while True:
            with self._lock:
                while len(self._outstanding) >= self.window and not self.finished:
                    self._room.wait()
                room = self.window - len(self._outstanding)
            if self.finished:
                return
            try:
                items, done = inbox.get_items(min(room, BATCH_MAX), timeout_s=0.5, hold=self._in_transit)
            except Empty:
                continue
            nudged = any(item is NUDGE for item in items)  # a Redis queue's "nothing new will come"
            with self._send_lock:  # the unit cannot end while this holds
                with self._lock:
                    deliveries, self._transit = _deliveries(self._transit), []
                if self._given_up:
                    return  # a forced exit recorded them
                if self.finished:  # ended meanwhile: what it took goes back for the group's other processes
                    inbox.give_back(deliveries)
                    if done:
                        inbox.put_done(1)
                    return
                if deliveries:
                    self._send_items(deliveries)
                if nudged:  # its instances holding a batch write it now
                    self._send(pickle.dumps(("nudge",)))
                if done:
                    self._done_sent = True
                    self._send(pickle.dumps(("done",)))
                    return

    def _in_transit(self, items: list[Any]) -> None:
        """Under the input queue's lock, as the feeder takes items: on their way, in this unit's hand."""
        self._transit = items

    def _send_items(self, deliveries: list[Delivery]) -> None:
        """Under the send lock: number the items, keep them as outstanding, send them."""
        with self._lock:
            first = self._next_seq
            self._next_seq += len(deliveries)
            self.counts.received += len(deliveries)
            self._outstanding.update(zip(range(first, first + len(deliveries)), deliveries))
        items = [delivery.item for delivery in deliveries]
        try:
            data = pickle.dumps(("items", first, items), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - find the items that cannot be pickled: each is that item's error
            pairs = [
                (seq, item) for seq, item in zip(range(first, first + len(items)), items) if self._picklable(seq, item)
            ]
            data = pickle.dumps(("pairs", pairs), protocol=pickle.HIGHEST_PROTOCOL)
        self._send(data)

    def _picklable(self, seq: int, item: Any) -> bool:
        try:
            pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            logger.warning(
                "%s: %r cannot be sent to a worker process: %s: %s", self.name, item, type(exc).__name__, exc
            )
            self._settle_dead(
                seq,
                f"cannot be sent to a worker process (pickle: {type(exc).__name__}: {exc})",
                attempts=1,
                kind="failed",
            )
            return False
        return True

    # --- reading -----------------------------------------------------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                if self._process_ended():
                    continue  # a replacement is running: read its pipe
                return
            try:
                self._handle_batch(pickle.loads(data))
            except Exception:  # noqa: BLE001 - a bug of ours must not leave the run waiting for this process
                logger.critical(
                    "%s: what worker process pid %s sent could not be handled; ending it as if it had died",
                    self.name,
                    self.process.pid,
                    exc_info=True,
                )
                self._ended_why = "ended by the runner: what it sent could not be handled"
                self.process.kill()  # the pipe's EOF follows: what it held is dead-lettered, a replacement starts

    def _handle_batch(self, messages: list[tuple]) -> None:
        """Outputs go on through the group's exits (in one go per queue where they allow), then the books of
        every item settled in the batch."""
        if self._given_up:
            return  # a forced exit recorded what the process held
        # An item that failed already (a part of it an output queue refused) is over: what else it sent is dropped.
        emits = [
            (delivery, message[2], message[0] == "emit")
            for message in messages
            if message[0] in ("emit", "part") and (delivery := self._delivery(message[1])) is not None
        ]
        if any(message[0] in ("emit", "stored", "dead", "unsent") for message in messages):
            self._progress = True  # the process finished an item (a replacement of it would be worth it)
        failed = self.runner.exits.emit_many(emits)
        with self._recording, self._lock:
            if self._given_up:
                return
            for (delivery, outputs, final), error in zip(emits, failed):
                if error is None:
                    self.counts.emitted += len(outputs)
                    if final:
                        self.counts.processed += 1
                        self._settled(delivery.token_seq)
        for (delivery, _outputs, _final), error in zip(emits, failed):
            if error is not None:  # e.g. an output Redis cannot take as JSON: that item's error (once)
                self._settle_dead(delivery.token_seq, f"{type(error).__name__}: {error}", attempts=1, kind="failed")
        for message in messages:
            if message[0] not in ("emit", "part"):
                self._handle(message)

    def _delivery(self, seq: int) -> Delivery | None:
        """The outstanding delivery `seq`; None once it is settled (or given up)."""
        with self._lock:
            delivery = self._outstanding.get(seq)
        if delivery is not None:
            delivery.token_seq = seq
        return delivery

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "stored":
            with self._recording:
                if self._given_up:
                    return
                self.runner.exits.stored([d for seq in message[1] if (d := self._delivery(seq)) is not None])
                with self._lock:
                    self.counts.stored += len(message[1])
                    self.counts.processed += len(message[1])
                    for seq in message[1]:
                        self._settled(seq)
        elif kind == "dead":
            _, seq, error, attempts, dead_kind = message
            self._settle_dead(seq, error, attempts=attempts, kind=dead_kind)
        elif kind == "unsent":  # an output of the item could not be pickled in the worker process
            _, seq, error = message
            delivery = self._delivery(seq)
            if delivery is not None:
                logger.warning("%s failed on %r: %s", self.name, delivery.item, error)
                self._settle_dead(seq, error, attempts=1, kind="failed")
        elif kind == "crash":
            _, name, text = message
            logger.error("%s ended with a crash: %s", name, text)
            self.crashes += 1
            self.crash = self.crash or ChildCrash(f"{name}: {text}")
        elif kind == "log":
            self._log(*message[1:])
        elif kind == "busy":
            self.counts.busy_s = self._busy_before[0] + message[1]
            self.counts.blocked_s = self._busy_before[1] + message[2]
        elif kind == "bye":
            self._bye = True

    def _settled(self, seq: int) -> None:
        """Under the lock: the item is done with; its room goes to the next."""
        self._outstanding.pop(seq, None)
        if (
            len(self._outstanding) < self.runner.group.spec.instances
            and self.window < WINDOW_MAX
            and self.runner.group.input.qsize()
        ):
            self.window *= 2  # the process was about to idle while work waits: send it more at a time
        notify(self._room)

    def _settle_dead(self, seq: int, error: str, *, attempts: int, kind: str) -> None:
        with self._recording:
            if self._given_up:
                return  # a forced exit recorded it
            delivery = self._delivery(seq)
            if delivery is None:
                return  # settled already (an item with two failing parts is dead-lettered once)
            try:
                written = self.runner.exits.dead_letter(delivery, error, attempts=attempts, kind=kind)
            except Returned:  # a Redis entry another consumer owns now: it settles it
                with self._lock:
                    self.counts.returned += 1
                    self._settled(seq)
                return
            with self._lock:
                self.counts.failed += kind == "failed"
                if written:
                    self.counts.dead_lettered += 1
                else:
                    self.counts.unrecorded += 1
                self._settled(seq)

    def _log(self, level: int, name: str, thread: str, text: str, exc_text: str | None) -> None:
        record = logging.LogRecord(name, level, __file__, 0, text, None, None)
        record.threadName, record.processName = thread, self.name
        record.exc_text = exc_text
        logging.getLogger(name).handle(record)

    # --- when the process ends ------------------------------------------------------------------------

    def _process_ended(self) -> bool:
        """The pipe closed. After "bye" the process is done; otherwise it died: dead-letter what its
        instances had taken and start a replacement for the rest. True when a replacement runs."""
        process = self.process
        why = self._stopped(process)
        with self._send_lock:
            if self._bye:
                self._give_back()
                self._end("no instance of the worker process was left to take it (they had crashed)")
                return False
            why, self._ended_why = self._ended_why or why, None
            held, _ = self._split()
            with self._lock:
                self._busy_before = (self.counts.busy_s, self.counts.blocked_s)
            logger.error(
                "%s (pid %s) died (%s) holding %d item(s); they are dead-lettered",
                self.name,
                process.pid,
                why,
                len(held),
            )
            for seq in held:
                self._settle_dead(
                    seq,
                    f"crashed: worker process {self.name} died ({why}) with this item in hand",
                    attempts=1,
                    kind="crashed",
                )
            self.crashes += 1
            self.crash = self.crash or ChildCrash(f"worker process {self.name} died ({why})")
            self.restarts = 0 if self._progress else self.restarts + 1
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
            with self._lock:
                waiting = sorted(self._outstanding.items())
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
                self._send(
                    pickle.dumps(
                        ("pairs", [(seq, delivery.item) for seq, delivery in waiting]), protocol=pickle.HIGHEST_PROTOCOL
                    )
                )
            if self._done_sent:
                self._send(pickle.dumps(("done",)))
            return True

    def _stopped(self, process: Any) -> str:
        """The pipe closed: wait for the process to be gone, killing it if it lingers, and say why it ended.
        After its goodbye it is exiting; without one, a process still running with its pipe closed is killed
        at once (after a moment for an exit under way): nothing may finish items the runner gives up on."""
        process.join(JOIN_TIMEOUT_S if self._bye else PIPE_CLOSED_GRACE_S)
        if not process.is_alive():
            return _died(process.exitcode)
        logger.error(
            "%s (pid %s) is still running after its pipe to the runner closed; killing it", self.name, process.pid
        )
        process.kill()
        process.join(JOIN_TIMEOUT_S)
        return "its pipe to the runner closed while it still ran; killed"

    def _split(self) -> tuple[list[int], list[int]]:
        """The outstanding seqs the process's instances were working on (in its slots), and the others. Read
        once it is dead: nothing changes the slots then."""
        with self._lock:
            held = set(self._slots) & self._outstanding.keys()
            others = self._outstanding.keys() - held
        return sorted(held), sorted(others)

    def _give_back(self) -> None:
        """The process ended with items no instance had taken: they go back to the group's input for its
        other processes, if any is still running."""
        if not any(unit is not self and not unit.finished for unit in self.runner.units):
            return
        _, untaken = self._split()
        with self._lock:
            left = [self._outstanding.pop(seq) for seq in untaken]
            self.counts.received -= len(left)
        if left:
            logger.warning(
                "%s: %d item(s) its instances never took go back to the group's other processes", self.name, len(left)
            )
            self.runner.group.input.give_back(left)

    def _end(self, why_left: str) -> None:
        """Under the send lock: the unit is over; what it still holds is dead-lettered."""
        held, untaken = self._split()
        for seq in held:  # as in one process: held by a crashed instance, or merely queued for it
            self._settle_dead(seq, f"crashed: {why_left}", attempts=1, kind="crashed")
        for seq in untaken:
            self._settle_dead(seq, f"not processed: {why_left}", attempts=0, kind="stopping")
        with self._lock:
            self.finished = True
            self._room.notify_all()
        self.conn.close()
        self.runner.on_exit(self)


def _deliveries(items: list[Any]) -> list[Delivery]:
    """The feeder's items as deliveries (a Redis queue hands out deliveries already; a nudge is no item)."""
    return [item if isinstance(item, Delivery) else Delivery(item) for item in items if item is not NUDGE]


def _died(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running after its pipe closed"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
