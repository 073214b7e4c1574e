"""How worker groups connect through queues: names that exist, one reader per queue, no cycles."""

from __future__ import annotations

from core.pipeline.problems import Checker, did_you_mean
from core.pipeline.specs import PipelineSpec


def check_wiring(
    spec: PipelineSpec, checker: Checker, *, queues_known: bool = True, workers_known: bool = True
) -> None:
    """Queue names exist; every queue has producers and exactly one consumer group; no cycles."""
    # `spec.workers` may hold only the sound entries of a broken file. A queue name is called unknown only when
    # every queue's name is known, and a queue nobody writes or reads only when every worker's queues are known:
    # otherwise these would be echoes of problems already reported.
    for worker in spec.workers if queues_known else ():
        named = ([("input_queue", worker.input_queue)] if worker.input_queue else []) + [
            (f"output_queues[{i}]", q) for i, q in enumerate(worker.output_queues)
        ]
        for key, name in named:
            if name not in spec.queues:
                line = worker.key_lines.get(key) or worker.key_lines.get(key.split("[")[0], worker.line)
                checker.add(
                    line,
                    f"workers.{worker.name}.{key.split('[')[0]}",
                    f"unknown queue {name!r}{did_you_mean(name, spec.queues)}",
                )
    for queue in spec.queues.values():
        readers = [w.name for w in spec.workers if w.input_queue == queue.name]
        if workers_known and not spec.producers(queue.name):
            checker.add(queue.line, f"queues.{queue.name}", "no worker writes to this queue")
        if workers_known and not readers:
            checker.add(queue.line, f"queues.{queue.name}", "no worker reads this queue")
        elif len(readers) > 1:
            checker.add(
                queue.line,
                f"queues.{queue.name}",
                f"read by {len(readers)} worker groups ({', '.join(readers)}); they would split its "
                "items between them. Give each group its own queue and list both in output_queues",
            )
    cycle = _find_cycle(spec)
    if cycle:
        first = next(w for w in spec.workers if w.name == cycle[0])
        checker.add(first.line, f"workers.{first.name}", "queues form a cycle: " + " -> ".join(cycle))


def _find_cycle(spec: PipelineSpec) -> list[str] | None:
    downstream = {w.name: [c.name for q in w.output_queues if (c := spec.consumer(q))] for w in spec.workers}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for nxt in downstream[name]:
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt, path)):
                return found
        state[name] = "done"
        path.pop()
        return None

    for worker in spec.workers:
        if worker.name not in state and (found := visit(worker.name, [])):
            return found
    return None
