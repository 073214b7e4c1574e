"""core.base.codec: every value it writes reads back as itself, and every text it cannot have written is one error,
codec.Undecodable (a ValueError), whatever is wrong with it: bad JSON, bad UTF-8, nesting too deep, an unknown
tag, a tag whose value has the wrong shape."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.base import codec

UNDECODABLE = {
    "decimal that is not a number": '{"$type": "decimal", "value": "abc"}',
    "decimal not text": '{"$type": "decimal", "value": 5}',
    "tuple of a number": '{"$type": "tuple", "value": 5}',
    "tuple of text": '{"$type": "tuple", "value": "ab"}',
    "dict with a list as key": '{"$type": "dict", "value": [[[1, 2], "x"]]}',
    "dict with a dict as key": '{"$type": "dict", "value": [[{"a": 1}, "x"]]}',
    "dict with a tuple holding a list as key": '{"$type": "dict", "value": [[{"$type": "tuple", "value": [[1]]}, 1]]}',
    "dict of a pair too short": '{"$type": "dict", "value": [[1]]}',
    "dict of an object": '{"$type": "dict", "value": {"a": 1}}',
    "bytes not base64": '{"$type": "bytes", "value": "!!!"}',
    "bytes with padding wrong": '{"$type": "bytes", "value": "AAA"}',
    "bytes not ASCII": '{"$type": "bytes", "value": "\u00e9t\u00e9"}',
    "datetime not ISO": '{"$type": "datetime", "value": "yesterday"}',
    "datetime out of range": '{"$type": "datetime", "value": "2001-13-45T00:00:00"}',
    "datetime a number": '{"$type": "datetime", "value": 1700000000}',
    "date not ISO": '{"$type": "date", "value": "2001-02-30"}',
    "float not a number": '{"$type": "float", "value": "x"}',
    "float a list": '{"$type": "float", "value": [1]}',
    "unknown tag": '{"$type": "pickle", "value": "gASV"}',
    "tag not text": '{"$type": ["decimal"], "value": "1"}',
    "tag without value": '{"$type": "decimal"}',
    "tag with more keys": '{"$type": "decimal", "value": "1", "extra": 2}',
    "repr": '{"$type": "repr", "value": "<object at 0x1>"}',
    "escaped tag": '{"\\u0024type": "decimal", "value": "abc"}',
    "tag inside a list": '[1, {"$type": "tuple", "value": null}]',
    "not JSON": "{not json",
    "empty": "",
    "trailing garbage": "[1] 2",
    "100,000-deep array": "[" * 100_000 + "]" * 100_000,
    "100,000-deep object": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "deep inside a tag": '{"$type": "tuple", "value": ' + "[" * 100_000 + "]" * 100_000 + "}",
}


@pytest.mark.parametrize("text", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_text_it_cannot_have_written_is_undecodable(text):
    for form in (text, text.encode("utf-8")):
        with pytest.raises(codec.Undecodable):
            codec.loads(form)


@pytest.mark.parametrize(
    "data", [b"\xff\xfe\x00garbage", b'{"a": "\xc3"}', bytes(range(256))], ids=["binary", "torn UTF-8", "every byte"]
)
def test_bytes_that_are_not_utf8_are_undecodable(data):
    with pytest.raises(codec.Undecodable):
        codec.loads(data)


def test_undecodable_is_a_value_error():
    # The Redis fetcher catches ValueError around loads(); RecursionError, InvalidOperation and TypeError,
    # which escaped it before, must all arrive as this one.
    assert issubclass(codec.Undecodable, ValueError)
    with pytest.raises(ValueError):
        codec.loads("[" * 100_000)


def test_decode_of_parsed_data_is_undecodable_the_same_way():
    for text in (
        '{"$type": "decimal", "value": "abc"}',
        '{"$type": "bytes", "value": "!!!"}',
        '{"$type": "tuple", "value": 5}',
    ):
        with pytest.raises(codec.Undecodable):
            codec.decode(json.loads(text))
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(codec.Undecodable):
        codec.decode(deep)


def test_a_message_says_what_is_wrong():
    with pytest.raises(codec.Undecodable, match="not a decimal number: 'abc'"):
        codec.loads('{"$type": "decimal", "value": "abc"}')
    with pytest.raises(codec.Undecodable, match="not base64: '!!!'"):
        codec.loads('{"$type": "bytes", "value": "!!!"}')
    with pytest.raises(codec.Undecodable, match="a tuple is written as a list, got a number"):
        codec.loads('{"$type": "tuple", "value": 5}')
    with pytest.raises(codec.Undecodable, match="nested too deeply"):
        codec.loads("[" * 100_000 + "]" * 100_000)


def random_value(rng: random.Random, depth: int = 0):
    """A value of the kinds the codec carries, nested a few levels."""
    kinds = ["int", "str", "float", "none", "bool", "datetime", "date", "decimal", "bytes", "special"]
    if depth < 4:
        kinds += ["list", "tuple", "dict", "odd dict"] * 2
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-(10**20), 10**20)
    if kind == "str":
        return "".join(rng.choice('ab$"\\\n\u2028\u00e9\U0001f600{}[]') for _ in range(rng.randint(0, 8)))
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "datetime":
        moment = datetime(2000, 1, 1) + timedelta(seconds=rng.randint(0, 10**9), microseconds=rng.randint(0, 10**6))
        return (
            moment.replace(tzinfo=timezone(timedelta(minutes=rng.randint(-900, 900)))) if rng.random() < 0.5 else moment
        )
    if kind == "date":
        return date(2000, 1, 1) + timedelta(days=rng.randint(0, 20000))
    if kind == "decimal":
        return Decimal(rng.randint(-(10**30), 10**30)).scaleb(-rng.randint(0, 20))
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 10)))
    if kind == "special":
        return rng.choice([float("inf"), float("-inf")])
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "tuple":
        return tuple(random_value(rng, depth + 1) for _ in range(rng.randint(0, 4)))
    if kind == "dict":
        return {
            rng.choice(["a", "b", "$type", "value", "\u2028"]): random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))
        }
    keys = [rng.randint(0, 9), (1, "x"), None, date(2020, 1, 1), b"k", "s"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_every_value_it_writes_reads_back_as_itself():
    rng = random.Random(16)
    for _ in range(3000):
        value = random_value(rng)
        text = codec.dumps(value)
        assert codec.loads(text) == value, text
        assert codec.loads(text.encode("utf-8")) == value, text
        assert codec.decode(json.loads(text)) == value, text


def test_nan_reads_back_as_nan():
    assert codec.loads(codec.dumps(float("nan"))) != codec.loads(codec.dumps(float("nan")))  # nan is not nan
    assert str(codec.loads(codec.dumps([float("nan")]))[0]) == "nan"


def test_plain_json_reads_as_json_reads_it():
    # Text with no tag takes the C parser alone; the result is what json.loads gives.
    for text in ('{"a": [1, 2.5, null, true, "x"]}', '"\\u00e9"', '["$type"]', '{"type": "decimal", "value": "x"}'):
        assert codec.loads(text) == json.loads(text)
