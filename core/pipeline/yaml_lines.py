"""YAML loading that remembers the line of every key and list item, for error messages."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable, Iterator
from typing import IO, Any

import yaml

# Aliases may add this many nodes to a file, beyond those written out. Real files use a few (`<<: *defaults`,
# a shared params block: tens to hundreds of nodes); an alias bomb adds millions. Every later walk of the file
# (${VAR}, --set, the checks, items sent on) costs time in the expanded size, and this keeps that under a second.
MAX_ALIAS_NODES = 100_000
# Nesting deeper than this is refused: a pipeline file nests a handful of levels, and each walk over the values
# is recursive, so a deep file would crash it with RecursionError instead of being named as a problem.
MAX_DEPTH = 100
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


class LoadLimitError(yaml.MarkedYAMLError):
    """Valid YAML refused while it is read: aliases that expand too far or into themselves, or too deep nesting."""


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader within the limits above, naming a scalar it cannot read (`!!int abc`) as a YAML problem."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._open_anchors: set[str] = set()  # anchors whose value is still being read
        self._alias_nodes = 0
        self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth) when fully expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._count_alias(event)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise LoadLimitError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._depth += 1
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(event.anchor)

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        """Add what the alias expands to; refuse the file once aliases add too much."""
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # PyYAML reports the undefined alias
        if event.anchor in self._open_anchors:
            raise LoadLimitError(
                None,
                None,
                f"alias *{event.anchor} is used inside the value it names, which would make that value endless",
                event.start_mark,  # type: ignore[arg-type]
            )
        nodes, depth = self._measure(target)
        if self._depth + depth > MAX_DEPTH:
            raise LoadLimitError(
                None,
                None,
                f"alias *{event.anchor} nests the file more than {MAX_DEPTH} levels deep",
                event.start_mark,  # type: ignore[arg-type]
            )
        self._alias_nodes += nodes
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise LoadLimitError(
                None,
                None,
                f"aliases expand the file by more than {MAX_ALIAS_NODES:,} values by "
                f"here (this *{event.anchor} alone adds {nodes:,}); write the values out or "
                "use fewer aliases",
                event.start_mark,  # type: ignore[arg-type]
            )

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        """How many nodes `node` expands to, and how deep; memoised, so shared values are measured once."""
        known = self._measured.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        sizes = [self._measure(child) if isinstance(child, yaml.Node) else (1, 1) for child in children]
        known = self._measured[id(node)] = (1 + sum(n for n, _ in sizes), 1 + max((d for _, d in sizes), default=0))
        return known


def _expect(node: yaml.Node, kind: type, name: str) -> None:
    """A `!!map` or `!!seq` tag on a value of another kind is a problem at its line (PyYAML would crash on it)."""
    if not isinstance(node, kind):
        found = {yaml.ScalarNode: "a scalar", yaml.SequenceNode: "a sequence", yaml.MappingNode: "a mapping"}
        raise yaml.constructor.ConstructorError(
            None, None, f"expected {name}, but found {found[type(node)]}", node.start_mark
        )


def _construct_mapping(loader: _LimitedLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
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


def _construct_sequence(loader: _LimitedLoader, node: yaml.SequenceNode) -> Iterator[LineList]:
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


def _checked_scalar(tag: str) -> Callable[[_LimitedLoader, yaml.Node], Any]:
    """PyYAML's constructor of `tag`, naming a text it cannot read as a problem at its line: on `!!int abc`,
    `!!bool maybe` or `!!timestamp 2001-13-45` PyYAML's own raises ValueError, KeyError, IndexError or
    AttributeError from inside its parsing."""
    construct = yaml.SafeLoader.yaml_constructors[tag]
    name = tag.rsplit(":", 1)[-1]

    def checked(loader: _LimitedLoader, node: yaml.Node) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            reason = f" ({exc})" if isinstance(exc, (ValueError, OverflowError)) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"{_shown(node.value)} is not a valid {name}{reason}", node.start_mark
            ) from None

    return checked


def _construct_text(loader: _LimitedLoader, node: yaml.Node) -> str:
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


class _LineLoader(_LimitedLoader):
    """_LimitedLoader whose mappings and sequences carry line numbers (1-based)."""

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
    _LimitedLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _checked_scalar(f"tag:yaml.org,2002:{_tag}"))
_LimitedLoader.add_constructor("tag:yaml.org,2002:str", _construct_text)
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
    return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - _LimitedLoader is a SafeLoader
