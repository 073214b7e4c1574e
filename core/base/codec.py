"""Items as JSON that reads back as the same Python values: for dead letters (and replaying them).

Plain JSON would turn a datetime into a string and a tuple into a list, so a replayed record would not
be the record that failed. Values JSON lacks are written as {"$type": name, "value": text}; reading
builds only these few types, never arbitrary objects, so a file cannot make the reader run code. Reading checks
each tag's value has the shape encode() writes (base64 strictly, ISO dates, a Decimal's text, a tuple's list, a
dict's [key, value] pairs with hashable keys); anything else it cannot read raises Undecodable.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

TAG = "$type"


class NotEncodable(ValueError):
    """An item holds a value JSON cannot carry and the codec has no tag for."""


class Undecodable(ValueError):
    """A text the codec cannot read back as a value, for any reason: not UTF-8, not JSON, nested too deeply,
    a tag it does not know, or a tagged value of the wrong shape. The one error loads() and decode() raise."""


def encode(value: Any, *, strict: bool = True) -> Any:
    """`value` as JSON-ready data; a value with no tag raises NotEncodable, or with strict=False is
    written as {"$type": "repr", ...} (kept for a human, not replayable)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return (
            value
            if value == value and value not in (float("inf"), float("-inf"))
            else {TAG: "float", "value": repr(value)}
        )
    if isinstance(value, list):
        return [encode(v, strict=strict) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: encode(v, strict=strict) for k, v in value.items()}
        return {TAG: "dict", "value": [[encode(k, strict=strict), encode(v, strict=strict)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {TAG: "tuple", "value": [encode(v, strict=strict) for v in value]}
    if isinstance(value, datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, bytes):
        return {TAG: "bytes", "value": base64.b64encode(value).decode("ascii")}
    if strict:
        raise NotEncodable(f"{type(value).__name__} cannot be written as JSON: {value!r:.200}")
    return {TAG: "repr", "value": repr(value)}


def decode(data: Any) -> Any:
    """The Python value encode() wrote, from parsed JSON; Undecodable for anything encode() cannot have written."""
    try:
        return _walk(data)
    except RecursionError:
        raise Undecodable(_TOO_DEEP) from None


def _walk(data: Any) -> Any:
    if isinstance(data, list):
        return [_walk(v) for v in data]
    if not isinstance(data, dict):
        return data
    if TAG not in data:
        return {k: _walk(v) for k, v in data.items()}
    return _untag(data, _walk)


def _untag(data: dict, inner: Callable[[Any], Any]) -> Any:
    """The value of one tagged object; `inner` reads what a tuple or a dict holds (already read, from loads)."""
    kind = data[TAG]
    reader = _READERS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        raise Undecodable(f"unknown {TAG} {kind!r:.100}")
    if len(data) != 2 or "value" not in data:
        raise Undecodable(
            f"a {TAG} {kind!r} object holds {TAG} and value only, got keys {sorted(map(str, data))!r:.200}"
        )
    return reader(data["value"], inner)


def _text(value: Any, kind: str) -> str:
    if not isinstance(value, str):
        raise Undecodable(f"a {kind} is written as text, got {_shape(value)}")
    return value


def _read_tuple(value: Any, inner: Callable[[Any], Any]) -> tuple:
    if not isinstance(value, list):
        raise Undecodable(f"a tuple is written as a list, got {_shape(value)}")
    return tuple(inner(v) for v in value)


def _read_dict(value: Any, inner: Callable[[Any], Any]) -> dict:
    if not isinstance(value, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in value):
        raise Undecodable(f"a dict is written as a list of [key, value] pairs, got {_shape(value)}")
    pairs = [(inner(key), inner(item)) for key, item in value]
    try:
        return dict(pairs)
    except TypeError as exc:  # a key that cannot be hashed: a list, a dict, a tuple holding one
        raise Undecodable(f"a dict key must be hashable: {exc}") from None


def _read_datetime(value: Any, inner: Callable[[Any], Any]) -> datetime:
    text = _text(value, "datetime")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise Undecodable(f"not an ISO datetime: {value!r:.100} ({exc})") from None


def _read_date(value: Any, inner: Callable[[Any], Any]) -> date:
    text = _text(value, "date")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise Undecodable(f"not an ISO date: {value!r:.100} ({exc})") from None


def _read_decimal(value: Any, inner: Callable[[Any], Any]) -> Decimal:
    text = _text(value, "decimal")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise Undecodable(f"not a decimal number: {value!r:.100}") from None


def _read_float(value: Any, inner: Callable[[Any], Any]) -> float:
    text = _text(value, "float")
    try:
        return float(text)  # encode() tags nan, inf and -inf; float() reads any number
    except ValueError:
        raise Undecodable(f"not a number: {value!r:.100}") from None


def _read_bytes(value: Any, inner: Callable[[Any], Any]) -> bytes:
    text = _text(value, "bytes")
    try:
        return base64.b64decode(text, validate=True)  # without validate, "!!!" reads as b""
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise Undecodable(f"not base64: {value!r:.100} ({exc})") from None


def _read_repr(value: Any, inner: Callable[[Any], Any]) -> Any:
    raise Undecodable(f"the item was not JSON when it was written (only its repr was kept): {value!s:.200}")


_READERS: dict[str, Callable[[Any, Callable[[Any], Any]], Any]] = {
    "tuple": _read_tuple,
    "dict": _read_dict,
    "datetime": _read_datetime,
    "date": _read_date,
    "decimal": _read_decimal,
    "float": _read_float,
    "bytes": _read_bytes,
    "repr": _read_repr,
}
_TOO_DEEP = "nested too deeply to read (past Python's recursion limit)"


def _shape(value: Any) -> str:
    return {
        list: "a list",
        dict: "an object",
        str: "text",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def dumps(value: Any, *, strict: bool = True) -> str:
    """encode() as one line of JSON text. Values JSON writes as they are (no tuple, no dict key that is not a
    string) go straight to the C encoder, which asks for the tagged form of a datetime and the like: the
    usual record costs a few microseconds, not a walk in Python."""
    if _json_shaped(value):
        try:
            return _ENCODER.encode(value)
        except ValueError:  # NaN or infinity: the walk below tags them
            pass
    return _PLAIN.encode(encode(value, strict=strict))


def loads(text: str | bytes) -> Any:
    """The value dumps() wrote; Undecodable for any text it cannot have written."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise Undecodable(f"not JSON text: got {type(text).__name__}")
    try:
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")  # what dumps() text is sent as
        if TAG not in text and "\\u" not in text:  # no tag, even escaped, can be in it: the C parser alone
            return _PLAIN_DECODER.decode(text)
        return _DECODER.decode(text)
    except RecursionError:  # the C parser's, on deep nesting; a RuntimeError, which callers would not expect
        raise Undecodable(_TOO_DEEP) from None
    except Undecodable:
        raise
    except ValueError as exc:  # not JSON, or not UTF-8 (a UnicodeDecodeError)
        raise Undecodable(f"not JSON text: {exc}") from None


def _read_object(data: dict) -> Any:
    """The JSON parser's hook for each object, innermost first: what a tagged one holds is read already."""
    return _untag(data, _as_read) if TAG in data else data


def _as_read(value: Any) -> Any:
    return value


def _tagged(value: Any) -> Any:
    """The C encoder's hook for what JSON lacks; anything else is the slow path's to judge."""
    if isinstance(value, (datetime, date, Decimal, bytes)):
        return encode(value)
    raise NotEncodable(f"{type(value).__name__} cannot be written as JSON: {value!r:.200}")


def _json_shaped(value: Any) -> bool:
    """True when JSON keeps the structure of `value` as it is: no tuples, no dict keys but strings, no key
    that looks like a tag."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or key == TAG:
                    return False
                if isinstance(child, (dict, list, tuple)):
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(child for child in item if isinstance(child, (dict, list, tuple)))
        elif isinstance(item, tuple):
            return False
    return True


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_tagged)
_PLAIN = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# One parser for every loads(): json.loads() with a hook would build a new one each call.
_DECODER = json.JSONDecoder(object_hook=_read_object)
_PLAIN_DECODER = json.JSONDecoder()
