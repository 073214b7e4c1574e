"""Reading a dead-letter file back for `main.py --replay`: each item to the group that dead-lettered it."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from core import codec
from core.config import ConfigError, PipelineSpec, Problem


def read_replay(path: str | Path) -> dict[str, list[Any]]:
    """{group: [items]} from a dead-letter file, in file order. The file is data only: JSON lines read
    with core.codec, never unpickled or evaluated. Every malformed line is a Problem naming its line."""
    path = str(path)
    problems: list[Problem] = []
    items: dict[str, list[Any]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path, 0, "--replay", f"cannot read the dead-letter file: {exc}")]) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("group"), str) or "item" not in record:
                raise ValueError("not a dead-letter record (it needs \"group\" and \"item\")")
            item = codec.decode(record["item"])
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            problems.append(Problem(path, number, "--replay", f"malformed dead letter: {exc}"))
            continue
        items.setdefault(record["group"], []).append(item)
    if problems:
        raise ConfigError(problems)
    if not items:
        raise ConfigError([Problem(path, 0, "--replay", "the dead-letter file holds no item to replay")])
    return items


def check_replay(replay: dict[str, list[Any]], spec: PipelineSpec) -> None:
    """Every group named in the file must be in the pipeline, or its items would go nowhere."""
    unknown = [group for group in replay if group not in {w.name for w in spec.workers}]
    if unknown:
        raise ConfigError([Problem(spec.path, 0, "--replay", f"the dead letters name group {group!r}, which "
                                   "this pipeline does not have (was the file written by another pipeline?)")
                           for group in unknown])


def describe(replay: dict[str, list[Any]]) -> str:
    """'3 items: 2 for YahooFinanceWorker, 1 for WikiWorker'."""
    counts = Counter({group: len(items) for group, items in replay.items()})
    return f"{sum(counts.values())} items: " + ", ".join(f"{n} for {group}" for group, n in counts.most_common())
