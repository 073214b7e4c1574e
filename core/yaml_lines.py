"""YAML loading that remembers the line of every key and list item, for error messages."""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml


class SetLine(int):
    """The line of a value that came from the command line (--set); `origin` names the argument."""

    origin: str

    def __new__(cls, origin: str) -> SetLine:
        line = super().__new__(cls, 0)
        line.origin = origin
        return line


class LineDict(dict):
    """A mapping from the file; `line` is where it starts, `key_lines[key]` where each key is."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        """Line of `key`, or of the mapping itself when the key is absent."""
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence from the file; `line` is where it starts, `item_lines[i]` where item i is."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        """Line of item `index`, or of the sequence itself when out of range."""
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class DuplicateKey(yaml.MarkedYAMLError):
    """PyYAML keeps the last of two equal keys silently; a pipeline file must not."""


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers (1-based)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode):
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    explicit: dict[Any, int] = {}  # keys written in this mapping; merged (<<) ones may be overridden
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, "found unhashable key", key_node.start_mark)
        if key in explicit:
            raise DuplicateKey("while reading a mapping", node.start_mark,
                               f"found duplicate key {key!r} (first on line {explicit[key]})", key_node.start_mark)
        explicit[key] = key_node.start_mark.line + 1
    loader.flatten_mapping(node)  # merged pairs come first, so the explicit ones below win
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode):
    data = LineList()
    data.line = node.start_mark.line + 1
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    yield data
    data.extend(loader.construct_object(child, deep=True) for child in node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def load_with_lines(text: str) -> Any:
    """Parse YAML text; raises yaml.YAMLError (with problem_mark) on bad syntax or duplicate keys."""
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
