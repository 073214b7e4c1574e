"""The pipeline as a Mermaid flowchart: input values -> worker groups -> queues -> worker groups."""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.api.kinds import describe_mode
from core.pipeline.config import PipelineSpec

SHOWN_VALUES = 3  # a source's first values in its node; the rest as a count
VALUE_CHARS = 60  # a value shown longer is cut here


def mermaid(spec: PipelineSpec) -> str:
    """Mermaid `flowchart LR` text for `spec`; paste it into a ```mermaid block to see it."""
    nodes, edges = [], []
    for worker in spec.workers:
        node = _id("w", worker.name)
        if worker.input_values:
            source = _id("in", worker.name)
            nodes.append(f'{source}[/"{_values(worker.input_values)}"/]')
            edges.append(f"{source} --> {node}")
        cls = spec.classes.get(worker.name)
        mode = describe_mode(worker, cls) if cls is not None else f"x{worker.instances}"
        nodes.append(f'{node}["{_label(worker.name)} ({mode})<br/>{_label(worker.class_name)}"]')
        if worker.input_queue:
            edges.append(f"{_id('q', worker.input_queue)} --> {node}")
        edges += [f"{node} --> {_id('q', queue)}" for queue in worker.output_queues]
    nodes += [f'{_id("q", q.name)}[("{_label(q.name)} ≤{q.maxsize}")]' for q in spec.queues.values()]
    return "\n".join(["flowchart LR"] + [f"    {line}" for line in nodes + edges]) + "\n"


def _values(values: Sequence[object]) -> str:
    """A source's input values as one node's label: the value, or the count and the first few."""
    shown = [_label(_cut(str(value))) for value in values[:SHOWN_VALUES]]
    if len(values) == 1:
        return shown[0]
    more = [f"… {len(values) - SHOWN_VALUES:,} more"] if len(values) > SHOWN_VALUES else []
    return "<br/>".join([f"{len(values):,} input values", *shown, *more])


def _cut(text: str) -> str:
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _id(prefix: str, name: str) -> str:
    """Mermaid node ids allow letters, digits and underscores only."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def _label(text: str) -> str:
    return text.replace('"', "#quot;")
