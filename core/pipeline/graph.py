"""The pipeline as a Mermaid flowchart: input values -> worker groups -> queues -> worker groups."""

from __future__ import annotations

import re

from core.api.kinds import describe_mode
from core.pipeline.config import PipelineSpec


def mermaid(spec: PipelineSpec) -> str:
    """Mermaid `flowchart LR` text for `spec`; paste it into a ```mermaid block to see it."""
    nodes, edges = [], []
    for worker in spec.workers:
        node = _id("w", worker.name)
        for index, value in enumerate(worker.input_values or ()):
            source = _id("in", f"{worker.name}_{index}")
            nodes.append(f'{source}[/"{_label(str(value))}"/]')
            edges.append(f"{source} --> {node}")
        cls = spec.classes.get(worker.name)
        mode = describe_mode(worker, cls) if cls is not None else f"x{worker.instances}"
        nodes.append(f'{node}["{_label(worker.name)} ({mode})<br/>{_label(worker.class_name)}"]')
        if worker.input_queue:
            edges.append(f"{_id('q', worker.input_queue)} --> {node}")
        edges += [f"{node} --> {_id('q', queue)}" for queue in worker.output_queues]
    nodes += [f'{_id("q", q.name)}[("{_label(q.name)} ≤{q.maxsize}")]' for q in spec.queues.values()]
    return "\n".join(["flowchart LR"] + [f"    {line}" for line in nodes + edges]) + "\n"


def _id(prefix: str, name: str) -> str:
    """Mermaid node ids allow letters, digits and underscores only."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def _label(text: str) -> str:
    return text.replace('"', "#quot;")
