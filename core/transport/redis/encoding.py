"""Items as a run's Redis queues take them: JSON (core.base.codec) no larger than the server takes, checked
before anything is sent (encode, encode_all), and the Encoder that reuses what a check wrote when the item is
sent. Never pickles: whoever can write to Redis cannot run code here.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from core.base import codec
from core.base.errors import ItemError

#: What the server answers when a command is too large for it. (An item far over proto-max-bulk-len gets no
#: answer: the server closes the connection while it is written, so the size is checked before it is sent.)
SIZE_REFUSALS = ("invalid bulk length", "invalid multibulk length", "max query buffer", "query buffer")


def encode(item: Any) -> str:
    """An item as JSON for Redis; ItemError when it holds something JSON cannot carry."""
    try:
        return codec.dumps(item)
    except (ValueError, RecursionError) as exc:  # NotEncodable, a circular reference, nesting too deep
        raise ItemError(f"cannot be written to a Redis queue: {exc}") from None


def encode_all(items: Any, limit_bytes: int) -> list[str]:
    """Items as JSON for Redis; ItemError when one holds what JSON cannot carry, or is larger than the server
    takes (`limit_bytes`, its proto-max-bulk-len)."""
    payloads = [encode(item) for item in items]
    quarter = limit_bytes // 4  # a text of fewer characters fits whatever they are (UTF-8: 4 bytes at most)
    for payload in payloads:
        if len(payload) > quarter:
            size = len(payload.encode("utf-8"))
            if size > limit_bytes:
                raise too_large(size, limit_bytes)
    return payloads


def too_large(size: int, limit_bytes: int) -> ItemError:
    """The error of an item `size` bytes long as JSON, for a server that takes `limit_bytes` at most."""
    return ItemError(
        f"cannot be written to a Redis queue: {size} bytes as JSON, more than the server takes "
        f"(proto-max-bulk-len {limit_bytes})"
    )


class Encoder:
    """Writes items as a run's Redis queues take them (encode_all), and remembers what check() wrote for
    emit() to reuse: the loop checks a generator's outputs as they are yielded and sends them later, and
    JSON costs 1.6 µs for a number, 7.5 µs for a price record, against about 22 µs per item for a whole hop.

    Kept by the output's identity (the object is held, so its id cannot be reused meanwhile), at most
    REMEMBER_OUTPUTS outputs and REMEMBER_CHARS characters: an item that failed after its check leaves its
    entries to be pushed out by the next ones. An object changed between its check and its emit goes on as
    it was when it was yielded."""

    REMEMBER_OUTPUTS = 1024
    REMEMBER_CHARS = 4 * 1024 * 1024

    def __init__(self, run: Any) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._checked: dict[int, tuple[Any, str]] = {}
        self._chars = 0

    def check(self, items: list[Any]) -> None:
        """ItemError when one of `items` cannot go to Redis; what was written is kept for encode()."""
        limit_bytes, kept = self.run.max_bulk_bytes, []
        for item in items:  # encode_all(), written out: the loop may check each output as it is yielded
            payload = encode(item)
            if len(payload) > limit_bytes // 4 and len(payload.encode("utf-8")) > limit_bytes:
                raise too_large(len(payload.encode("utf-8")), limit_bytes)
            if type(item) not in _SCALARS and len(payload) <= self.REMEMBER_CHARS // 4:
                kept.append((item, payload))  # a number or a string is written again faster than remembered
        if not kept:
            return
        with self._lock:
            for item, payload in kept:
                old = self._checked.pop(id(item), None)
                self._chars += len(payload) - (len(old[1]) if old else 0)
                self._checked[id(item)] = (item, payload)
            while len(self._checked) > self.REMEMBER_OUTPUTS or self._chars > self.REMEMBER_CHARS:
                _, (_, payload) = _pop_oldest(self._checked)
                self._chars -= len(payload)

    def encode(self, items: list[Any]) -> list[str]:
        """encode_all(items), reusing what check() wrote for them."""
        if not self._checked:
            return encode_all(items, self.run.max_bulk_bytes)
        with self._lock:
            found = [self._checked.pop(id(item), None) for item in items]
            self._chars -= sum(len(hit[1]) for hit in found if hit is not None)
        known = [hit[1] if hit is not None and hit[0] is item else None for item, hit in zip(items, found, strict=True)]
        missing = [item for item, payload in zip(items, known, strict=True) if payload is None]
        if not missing:
            return cast(list[str], known)
        fresh = iter(encode_all(missing, self.run.max_bulk_bytes))
        return [payload if payload is not None else next(fresh) for payload in known]


_SCALARS = frozenset((int, float, str, bool, type(None)))


def _pop_oldest(checked: dict[int, tuple[Any, str]]) -> tuple[int, tuple[Any, str]]:
    key = next(iter(checked))
    return key, checked.pop(key)
