"""Items as JSON that reads back as the same Python values: for dead letters (and replaying them).

Plain JSON would turn a datetime into a string and a tuple into a list, so a replayed record would not
be the record that failed. Values JSON lacks are written as {"$type": name, "value": text}; reading
builds only these few types, never arbitrary objects, so a file cannot make the reader run code.
"""
from __future__ import annotations

import base64
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

TAG = "$type"


class NotEncodable(ValueError):
    """An item holds a value JSON cannot carry and the codec has no tag for."""


def encode(value: Any, *, strict: bool = True) -> Any:
    """`value` as JSON-ready data; a value with no tag raises NotEncodable, or with strict=False is
    written as {"$type": "repr", ...} (kept for a human, not replayable)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else \
            {TAG: "float", "value": repr(value)}
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
    """The Python value encode() wrote; ValueError for a tag it does not know (or a repr)."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if TAG not in data:
        return {k: decode(v) for k, v in data.items()}
    kind, text = data[TAG], data.get("value")
    if kind == "tuple":
        return tuple(decode(v) for v in text)
    if kind == "dict":
        return {decode(k): decode(v) for k, v in text}
    if kind == "datetime":
        return datetime.fromisoformat(text)
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "decimal":
        return Decimal(text)
    if kind == "float":
        return float(text)
    if kind == "bytes":
        return base64.b64decode(text)
    if kind == "repr":
        raise ValueError(f"the item was not JSON when it was written (only its repr was kept): {text:.200}")
    raise ValueError(f"unknown {TAG} {kind!r}")


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
    """The value dumps() wrote."""
    data = json.loads(text)
    return data if isinstance(data, (str, int, float, bool, type(None))) else decode(data)


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
