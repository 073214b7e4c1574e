"""The worker-process side of `processes: P`: build the group's workers from a picklable spec and run the
same loop (core.run.loop, in threads or asyncio tasks) on items that arrive through a pipe from the parent.

Everything the loop settles goes back to the parent through the same pipe, batched (core/modes/outbox.py; the
parent takes it in, core/modes/unit_reports.py): an item's outputs ("emit", pickled here, so an output that
cannot be pickled is that item's error), a batch stored ("stored"), a dead letter ("dead"), a crash, the log
records and the busy time. Which items instances are working on is not a message: it is kept in memory shared
with the parent (Slots), so the parent knows what this process held even if it is killed before it could say
anything. The parent keeps the ledger, writes the dead letters and puts the outputs downstream, so the books are
whole whatever happens here. Signals are the parent's business: this process ignores SIGINT and SIGTERM, and
dies with its parent (PR_SET_PDEATHSIG, and EOF on the pipe).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import pickle
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from core.base.collector import startup_gc
from core.base.descriptors import reserve
from core.http import offline
from core.modes.outbox import Outbox, PipeLogHandler, log_uncaught
from core.modes.threads import ThreadRunner
from core.run.group import WorkerGroup
from core.run.hand import ErrorLog
from core.run.loop import Instance
from core.transport.base import DONE, NUDGE, Delivery, Empty, Hold
from core.transport.local import LocalQueue


@dataclass(frozen=True)
class ChildSpec:
    """What a worker process needs to build its share of a group (picklable)."""

    worker: Any  # core.pipeline.specs.WorkerSpec
    pipeline_path: str
    unit: int  # which of the group's processes this is (0-based)
    log_level: int
    mode: str  # threads | async
    json_outputs: bool = False  # an output queue is in Redis: outputs must be what JSON carries


class Slots:
    """The items this process's instances are working on, in memory shared with the parent: one slot per item
    an instance holds, set to its seq under the queue's lock as the instance takes it (before it starts the
    item) and cleared once its outcome is in the outbox. Should the process die, the parent reads the slots:
    the items in them were in hand (dead-lettered as crashed, so a poison item costs only itself, after one
    delivery); every other item it was sent was not taken yet, or was finished with its outcome lost with the
    process, and goes to the replacement. Messages could not tell this: a process killed on an item has no
    time to say it took it.
    """

    def __init__(self, shared: Any) -> None:
        self.shared = shared  # a multiprocessing RawArray('q'), -1 where free; the parent reads it
        self._view = memoryview(shared).cast("B").cast("q")  # its memory: stores faster than through ctypes
        self._free = list(range(len(shared) - 1, -1, -1))  # list.pop/append are atomic: no lock needed

    def take(self, seq: int) -> int:
        slot = self._free.pop()  # the parent never sends more than there are slots
        self._view[slot] = seq
        return slot

    def clear(self, slot: int) -> None:
        self._view[slot] = -1
        self._free.append(slot)


class ChildInbox:
    """The instances' input: the items the parent sent; each one taken gets a slot (see Slots)."""

    def __init__(self, queue: LocalQueue, slots: Slots) -> None:
        self.queue = queue
        self.slots = slots
        self._holders: dict[int, Hold] = {}  # per instance's hold: made once, not per take

    def get(self, timeout_s: float | None = None, *, wake_at: int = 1, hold: Hold | None = None) -> Delivery | Any:
        return self._unwrapped(self.queue.get(timeout_s, wake_at=wake_at, hold=self._holder(hold)))

    def get_or_wait(self, loop: Any, hold: Hold | None = None) -> Delivery | Any:
        """get() for an asyncio task (see LocalQueue.get_or_wait)."""
        delivery = self.queue.get_or_wait(loop, self._holder(hold))
        if delivery is DONE or not isinstance(delivery, Delivery):
            return delivery
        return self._unwrapped(delivery)

    def _holder(self, hold: Hold | None) -> Hold:
        """Under the queue's lock: unwrap the parent's (seq, item) pair into the delivery (its token is then
        (seq, slot)) and give it a slot, then `hold` it."""
        holder = self._holders.get(id(hold))
        if holder is None:
            holder = self._holders[id(hold)] = self._make_holder(hold)
        return holder

    def _make_holder(self, hold: Hold | None) -> Hold:
        def held(delivery: Delivery) -> None:
            if delivery.item is NUDGE:
                return
            seq, delivery.item = delivery.item
            delivery.token = (seq, self.slots.take(seq))
            if hold is not None:
                hold(delivery)

        return held

    @staticmethod
    def _unwrapped(delivery: Delivery | Any) -> Delivery | Any:
        if delivery is not DONE and delivery.item is NUDGE:
            raise Empty  # nothing new will come for now: an instance holding a batch writes it
        return delivery

    def forget_waiter(self, future: Any) -> None:
        self.queue.forget_waiter(future)

    def ack(self, delivery: Delivery) -> None:
        """Settling is reported by the exits."""


class ChildExits:
    """Where an instance's items go: back to the parent, which puts them downstream and keeps the books. An
    item's slot is cleared once its outcome is in the outbox."""

    def __init__(self, outbox: Outbox, slots: Slots, *, json_outputs: bool = False) -> None:
        self.outbox = outbox
        self.slots = slots
        self._json = json_outputs

    def check(self, outputs: list[Any]) -> None:
        """ItemError when an output cannot go to every output queue (the parent puts them there)."""
        if self._json:
            from core.transport.redis.encoding import encode  # loaded only where outputs go to Redis

            for output in outputs:
                encode(output)

    def emit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        seq, slot = delivery.token
        self.outbox.add(("emit" if final else "part", seq, outputs))
        if final:
            self.slots.clear(slot)
        return 0.0  # a full outbox is the parent's backpressure: that wait shows up in the parent

    async def aemit(self, delivery: Delivery, outputs: list[Any], *, final: bool = True) -> float:
        seq, slot = delivery.token
        message = ("emit" if final else "part", seq, outputs)
        if not self.outbox.add(message, wait=False):
            import asyncio

            await asyncio.get_running_loop().run_in_executor(None, self.outbox.add, message)
        if final:
            self.slots.clear(slot)
        return 0.0

    def stored(self, deliveries: list[Delivery]) -> None:
        self.outbox.add(("stored", [delivery.token[0] for delivery in deliveries]))
        for delivery in deliveries:
            self.slots.clear(delivery.token[1])

    def dead_letter(self, delivery: Delivery, error: str, *, attempts: int, kind: str) -> bool:
        seq, slot = delivery.token
        self.outbox.add(("dead", seq, error, attempts, kind))
        self.slots.clear(slot)
        return True  # the parent writes it, and counts it only once it is on file


def child_main(spec: ChildSpec, conn: Any, slots: Any) -> None:
    """The worker process: build the instances, run them until DONE, report, exit. `slots` are shared with
    the parent (see Slots)."""
    reserve()  # while this is the only thread (core/base/descriptors.py)
    startup_gc.pause()  # until its instances have set up (core/base/collector.py)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    outbox = Outbox(conn)
    outbox.thread.start()
    logging.basicConfig(level=spec.log_level, handlers=[PipeLogHandler(outbox)], force=True)
    threading.excepthook = log_uncaught
    from core.base.paths import use_module_search_paths

    use_module_search_paths(spec.pipeline_path)
    offline.enter()  # an offline run's processes refuse the network too
    runner, group, queue = _build(spec, outbox, Slots(slots))
    receiver = threading.Thread(
        target=_receive, args=(conn, queue, group, len(runner.instances)), name="inbox", daemon=True
    )
    receiver.start()
    runner.start()
    runner.join(None)
    group.close()
    outbox.add(("bye",))
    outbox.close()
    conn.close()
    logging.shutdown()
    os._exit(0)  # the receiver thread may still wait on the pipe: nothing else is left to do


class InstanceRunner(Protocol):
    """Where a worker process's instances run: core.modes.threads.ThreadRunner or core.modes.tasks.AsyncRunner."""

    instances: list[Instance]

    def start(self) -> None:
        """Start every instance."""

    def join(self, timeout_s: float | None) -> bool:
        """Wait for every instance (None: as long as it takes)."""


def _build(spec: ChildSpec, outbox: Outbox, slots: Slots) -> tuple[InstanceRunner, WorkerGroup, LocalQueue]:
    worker_spec = spec.worker
    cls = getattr(importlib.import_module(worker_spec.location), worker_spec.class_name)
    queue = LocalQueue(f"{worker_spec.name}.p{spec.unit}", 1)
    queue.on_reject = lambda pair: _not_processed(pair[0], outbox)  # closed when the run stops
    inbox = ChildInbox(queue, slots)
    # The parent writes the dead letters (ChildExits reports them): the group here has no file of its own.
    group = WorkerGroup(worker_spec, input=queue, dead_letters=None)  # type: ignore[arg-type]
    exits = ChildExits(outbox, slots, json_outputs=spec.json_outputs)
    first = spec.unit * worker_spec.instances
    instances, errors = [], ErrorLog()
    for index in range(first, first + worker_spec.instances):
        worker = cls(group=group, index=index, **worker_spec.params)
        instance = Instance(
            worker,
            exits=exits,
            stop=group.stop,
            on_exit=lambda instance: _report_crash(instance, outbox),
            errors=errors,
        )
        instances.append(instance)
    group.instances = list(instances)
    outbox.busy = lambda: (sum(i.counts.busy_s for i in instances), sum(i.counts.blocked_s for i in instances))
    if spec.mode == "async":
        from core.modes.tasks import AsyncRunner  # and with it asyncio, which a threads-only process never loads

        return AsyncRunner(instances, inbox, close_resources=group.aclose), group, queue
    return ThreadRunner(instances, inbox), group, queue


def _not_processed(seq: int, outbox: Outbox) -> None:
    outbox.add(("dead", seq, "not processed: the queue was closed (pipeline stopping)", 0, "stopping"))


def _report_crash(instance: Instance, outbox: Outbox) -> None:
    if instance.crash is not None:
        outbox.add(("crash", instance.name, f"{type(instance.crash).__name__}: {instance.crash}"))


def _receive(conn: Any, queue: LocalQueue, group: WorkerGroup, instances: int) -> None:
    """Items from the parent into the instances' queue, until DONE; EOF means the parent is gone: exit."""
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            os._exit(1)
        kind = message[0]
        if kind == "items":  # ("items", first seq, items)
            queue.preload(enumerate(message[2], message[1]))
        elif kind == "pairs":  # ("pairs", [(seq, item), ...]): some were left out, or sent again
            queue.preload(message[1])
        elif kind == "nudge":  # ("nudge",): the parent's queue has nothing new for now
            queue.preload([NUDGE] * instances)
        elif kind == "done":
            queue.put_done(instances)
        elif kind == "stop":
            group.stop.set()
            if message[1]:  # not a sink: what no instance took yet is not processed (as in one process)
                queue.close()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (a SIGKILLed parent cannot tell us)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
