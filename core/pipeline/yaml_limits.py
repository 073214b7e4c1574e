"""The limits a pipeline file is read within: how far aliases may expand it and how deep it may nest.

An alias bomb (a few lines whose aliases expand to millions of values) or a file nested thousands of levels deep is
valid YAML; it is refused while it is read, with the line where it goes too far, instead of hanging or crashing a
later walk over the values.
"""

from __future__ import annotations

from typing import Any

import yaml

# Aliases may add this many nodes to a file, beyond those written out. Real files use a few (`<<: *defaults`,
# a shared params block: tens to hundreds of nodes); an alias bomb adds millions. Every later walk of the file
# (${VAR}, --set, the checks, items sent on) costs time in the expanded size, and this keeps that under a second.
MAX_ALIAS_NODES = 100_000
# Nesting deeper than this is refused: a pipeline file nests a handful of levels, and each walk over the values
# is recursive, so a deep file would crash it with RecursionError instead of being named as a problem.
MAX_DEPTH = 100


class LoadLimitError(yaml.MarkedYAMLError):
    """Valid YAML refused while it is read: aliases that expand too far or into themselves, or too deep nesting."""


class LimitedLoader(yaml.SafeLoader):
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
