"""YAML loading that remembers the line of every key and list item, for error messages."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable, Iterator
from typing import IO, Any

import yaml

from core.pipeline.yaml_limits import MAX_DEPTH, LimitedLoader

SEQ_TAG = "tag:yaml.org,2002:seq"


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
    item_lines: array  # of int, one per item (4 bytes, not a node of PyYAML's with two marks)

    def line_of(self, index: int) -> int:
        """Line of item `index`, or of the sequence itself when out of range."""
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class DuplicateKey(yaml.MarkedYAMLError):
    """PyYAML keeps the last of two equal keys silently; a pipeline file must not."""


def _expect(node: yaml.Node, kind: type, name: str) -> None:
    """A `!!map` or `!!seq` tag on a value of another kind is a problem at its line (PyYAML would crash on it)."""
    if not isinstance(node, kind):
        found = {yaml.ScalarNode: "a scalar", yaml.SequenceNode: "a sequence", yaml.MappingNode: "a mapping"}
        raise yaml.constructor.ConstructorError(
            None, None, f"expected {name}, but found {found[type(node)]}", node.start_mark
        )


def _construct_mapping(loader: LimitedLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
    _expect(node, yaml.MappingNode, "a mapping")
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
                "while reading a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            )
        if key in explicit:
            raise DuplicateKey(
                "while reading a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first on line {explicit[key]})",
                key_node.start_mark,
            )
        explicit[key] = key_node.start_mark.line + 1
    for key_node, value_node in node.value:
        if (
            key_node.tag == "tag:yaml.org,2002:merge"
            and isinstance(value_node, _Sequence)
            and not all(isinstance(child, yaml.Node) for child in value_node.value)
        ):
            raise yaml.constructor.ConstructorError(  # as PyYAML says it, which expects nodes here
                "while constructing a mapping",
                node.start_mark,
                "expected a mapping for merging, but found scalar",
                value_node.start_mark,
            )
    loader.flatten_mapping(node)  # merged pairs come first, so the explicit ones below win
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_sequence(loader: LimitedLoader, node: yaml.SequenceNode) -> Iterator[LineList]:
    _expect(node, yaml.SequenceNode, "a sequence")
    data = LineList()
    data.line = node.start_mark.line + 1
    data.item_lines = (
        node.lines if isinstance(node, _Sequence) else array("I", (child.start_mark.line + 1 for child in node.value))
    )
    yield data
    data.extend(
        loader.construct_object(child, deep=True) if isinstance(child, yaml.Node) else child for child in node.value
    )


def _checked_scalar(tag: str) -> Callable[[LimitedLoader, yaml.Node], Any]:
    """PyYAML's constructor of `tag`, naming a text it cannot read as a problem at its line: on `!!int abc`,
    `!!bool maybe` or `!!timestamp 2001-13-45` PyYAML's own raises ValueError, KeyError, IndexError or
    AttributeError from inside its parsing."""
    construct = yaml.SafeLoader.yaml_constructors[tag]
    name = tag.rsplit(":", 1)[-1]

    def checked(loader: LimitedLoader, node: yaml.Node) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            reason = f" ({exc})" if isinstance(exc, (ValueError, OverflowError)) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"{_shown(node.value)} is not a valid {name}{reason}", node.start_mark
            ) from None

    return checked


def _construct_text(loader: LimitedLoader, node: yaml.Node) -> str:
    """A string, refused when an escape made it half of a UTF-16 pair ("\\ud800"): that is no character, and
    printing, logging or storing the value would fail in the middle of a run."""
    text = loader.construct_scalar(node)  # type: ignore[arg-type]  # registered for scalar nodes only
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"{_shown(text)} holds {text[exc.start]!r}, half of a UTF-16 surrogate pair, which is no "
            "character (write the character itself)",
            node.start_mark,
        ) from None
    return text


def _shown(text: Any) -> str:
    """A scalar's text for a message, cut short (an int may be thousands of digits)."""
    text = repr(text)
    return text if len(text) <= 60 else text[:57] + "..."


class _Sequence(yaml.SequenceNode):
    """A sequence whose plain scalars are read as it is composed: `value` holds them as Python values, beside
    the nodes of its other items, and `lines` the line of each. A list of 200,000 input values then costs its
    values and 4 bytes a line, not a ScalarNode with two Marks apiece (180 MiB at 200,000, for --check)."""

    lines: array


class _LineLoader(LimitedLoader):
    """LimitedLoader whose mappings and sequences carry line numbers (1-based)."""

    # types-PyYAML gives compose_sequence_node the `anchors` dict of compose_document; PyYAML passes the anchor
    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:  # type: ignore[override]
        start = self.peek_event()
        if start.tag not in (None, "!", SEQ_TAG):  # !!omap, !!pairs and the like read their items as nodes
            return super().compose_sequence_node(anchor)  # type: ignore[arg-type]
        self.get_event()
        node = _Sequence(SEQ_TAG, [], start.start_mark, None, flow_style=start.flow_style)
        node.lines = array("I")
        if anchor is not None:
            self.anchors[anchor] = node
        index = 0
        while not self.check_event(yaml.SequenceEndEvent):
            event = self.peek_event()
            node.lines.append(event.start_mark.line + 1)
            scalar = isinstance(event, yaml.ScalarEvent) and event.anchor is None and self._depth < MAX_DEPTH
            node.value.append(self._read_scalar() if scalar else self.compose_node(node, index))
            index += 1
        node.end_mark = self.get_event().end_mark
        return node

    def _read_scalar(self) -> Any:
        """The next scalar event's value; its node, for the constructor to report, when its tag has no reader."""
        event = self.get_event()
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        construct = self.yaml_constructors.get(tag)
        return node if construct is None else construct(self, node)


for _tag in ("null", "bool", "int", "float", "binary", "timestamp"):
    LimitedLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _checked_scalar(f"tag:yaml.org,2002:{_tag}"))
LimitedLoader.add_constructor("tag:yaml.org,2002:str", _construct_text)
_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)  # after the above: it copies them
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def plain(value: Any) -> Any:
    """`value` with every LineDict, LineList and SetLine made a plain dict, list and int (for another process:
    unpickling these would load PyYAML there)."""
    if isinstance(value, SetLine):
        return int(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return value


def load_with_lines(text: str | IO[str]) -> Any:
    """Parse YAML text (or a text stream, read in chunks).

    Raises yaml.YAMLError (with problem_mark) on bad syntax, duplicate keys, or a file past the limits above
    (LoadLimitError)."""
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader


def load_plain(text: str) -> Any:
    """Parse one YAML value (a --set value, an expanded ${VAR}) as plain dicts and lists, within the same limits;
    raises yaml.YAMLError for anything it cannot read."""
    return yaml.load(text, Loader=LimitedLoader)  # noqa: S506 - LimitedLoader is a SafeLoader
