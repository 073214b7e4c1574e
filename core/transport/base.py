"""What every transport's queue offers and hands out: the interface (Queue), a Delivery (the item and what its
transport needs to settle it), the DONE and NUDGE sentinels, Empty. One class per transport implements it:
core/transport/local.py in this process, core/transport/redis/queue.py in Redis streams; nothing above a queue
knows which.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeGuard


class _Done:
    """Type of DONE; compare with `is DONE`."""

    def __repr__(self) -> str:
        return "DONE"

    def __reduce__(self) -> str:
        # Unpickles as the module's DONE, so `is DONE` holds across processes too.
        return "DONE"


#: End of stream, the one sentinel. Once every instance of every group writing to a queue has ended,
#: the executor puts one DONE per reader instance into it; a reader instance stops at the first DONE it
#: takes. A closed queue hands out DONE to every caller once it is empty.
DONE = _Done()


class _Nudge:
    """Type of NUDGE."""

    def __repr__(self) -> str:
        return "NUDGE"


#: In a reader's buffer, never an item: "nothing new will come for now". A reader that takes it sees Empty, as
#: after its idle time, so an instance holding a batch writes it (core/transport/redis/fetcher.py puts it there; a
#: process group's feeder passes it on to its worker processes).
NUDGE = _Nudge()


class Empty(Exception):
    """Raised by get() when the timeout passed with nothing to take."""


class Delivery:
    """One item handed to a reader, and what its transport needs to settle it (`token`)."""

    __slots__ = ("item", "token")

    def __init__(self, item: Any, token: Any = None) -> None:
        self.item = item
        self.token = token

    def __repr__(self) -> str:
        return f"Delivery({self.item!r})"


#: Called under a queue's lock with the Delivery being taken (see LocalQueue.get).
Hold = Callable[[Delivery], None]


class QueueWriter(Protocol):
    """What a producer sees of a queue: it puts items in, waiting for room."""

    name: str
    on_reject: Callable[[Any], None]  # gets each item offered once the queue was closed (its reader dead-letters it)

    def put(self, item: Any) -> bool:
        """Add one item, waiting for room; False when the queue is closed."""

    def put_nowait(self, item: Any) -> bool | None:
        """Add one item if there is room now."""

    def put_many(self, items: list[Any]) -> float:
        """Add items, waiting for room; return the seconds spent waiting."""


class QueueReader(Protocol):
    """What a reader sees of a queue: deliveries to take, then settle (ack) or give back."""

    name: str

    def get(self, timeout_s: float | None = None, *, wake_at: int = 1, hold: Hold | None = None) -> Delivery | Any:
        """The next delivery (or DONE); Empty after `timeout_s`; `hold` gets it under the queue's lock."""

    def get_items(
        self, max_items: int, timeout_s: float | None = None, hold: Callable[[list[Any]], None] | None = None
    ) -> tuple[list[Any], bool]:
        """Up to `max_items` items at once, and whether a DONE came."""

    def get_or_wait(self, loop: Any, hold: Hold | None = None) -> Delivery | Any:
        """For an asyncio reader: the next delivery now, or a future on `loop` that gets it."""

    def forget_waiter(self, future: Any) -> None:
        """A future get_or_wait gave will not be awaited (its task was cancelled)."""

    def give_back(self, deliveries: list[Delivery]) -> None:
        """Deliveries taken and not processed go back, unsettled."""

    def ack(self, delivery: Delivery) -> None:
        """The delivery is settled."""


class Queue(QueueWriter, QueueReader, Protocol):
    """A bounded queue between worker groups, whatever its transport: its writers' and readers' sides, and what
    the runner does with it (fill it beyond maxsize, end it, close it, freeze it, read its ledger)."""

    maxsize: int
    # its ledger (in the run's report): items put by producers, beyond maxsize by the runner, taken by readers
    put_count: int
    preloaded: int
    get_count: int

    @property
    def high_water(self) -> int:
        """The most items waiting at once."""

    @property
    def closed(self) -> bool:
        """No more items are taken."""

    def preload(self, items: list[Any]) -> int:
        """Add items beyond maxsize (a source's input values, a replay); return how many."""

    def put_done(self, count: int) -> None:
        """Add `count` DONEs: one for each reader instance."""

    def close(self) -> int:
        """Take no more items; what waits is rejected (dead-lettered by the owner). Return how many."""

    def freeze(self) -> list[Any]:
        """For a forced exit: stop every reader and writer at once and return what waits."""

    def qsize(self) -> int:
        """Items waiting."""


class SharedWriter(Protocol):
    """How a shared queue's items go in once encoded (core.transport.redis.writer.Writer)."""

    def put_payloads(self, payloads: list[str], *, wait: bool = True) -> float:
        """Add encoded items, waiting for room; return the seconds spent waiting."""


class SharedReading(Protocol):
    """How a shared queue is read in this process (core.transport.redis.fetcher.Fetcher)."""

    def start(self, readers: int, prefetch: int) -> None:
        """Begin reading for `readers` instances, holding up to `prefetch` items ahead unsettled."""


class SharedStream(Protocol):
    """A shared queue's place in the run."""

    def backlog(self) -> tuple[int, int]:
        """(entries waiting for any reader of the run, entries read and not yet settled)."""


class SharedQueue(Queue, Protocol):
    """A queue held outside this process (core/transport/redis): its items travel encoded, once for every such
    queue of a fan-out (its writer); its readers start reading when the run is ready (its fetcher); it ends by
    its own proof, not by the DONEs of this process."""

    is_redis: bool
    keeps_unsettled: bool
    encoder: Any  # check(items) raises ItemError for what it cannot carry; encode(items) -> list[str]

    @property
    def writer(self) -> SharedWriter:
        """Where encoded items go in."""

    @property
    def fetcher(self) -> SharedReading:
        """What reads the queue for this process."""

    @property
    def stream(self) -> SharedStream:
        """The queue as the whole run sees it."""


def is_shared(queue: object) -> TypeGuard[SharedQueue]:
    """True for a queue held outside this process (without importing its transport)."""
    return getattr(queue, "is_redis", False)


def run_size(queue: Queue) -> tuple[int, int | None]:
    """(items waiting in the queue for the run, items read and not yet settled: None for a queue of this process).
    A shared queue's own size is only what this process has fetched; the rest waits in the stream."""
    if not is_shared(queue):
        return queue.qsize(), None
    local = queue.qsize()
    try:
        unread, pending = queue.stream.backlog()
    except Exception:  # noqa: BLE001 - Redis unreachable: the numbers shown fall back to this process's own
        return local, None
    return unread + local, max(pending - local, 0)  # what this process fetched is pending in Redis too


def notify(condition: threading.Condition) -> None:
    """notify() only when someone waits: with a plain Lock, Condition.notify() checks ownership by taking
    and releasing the lock again, which costs more than the rest of a put on the hot path."""
    if condition._waiters:  # type: ignore[attr-defined]  # noqa: SLF001 - read under the lock the caller holds
        condition.notify()


def notify_all(condition: threading.Condition) -> None:
    """notify_all() only when someone waits (see notify)."""
    if condition._waiters:  # type: ignore[attr-defined]  # noqa: SLF001 - read under the lock the caller holds
        condition.notify_all()
