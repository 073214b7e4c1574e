"""Reading a dead-letter file back for `main.py --replay`: each item to the group that dead-lettered it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.base import codec
from core.pipeline.config import ConfigError, PipelineSpec, Problem


class Replay(dict):
    """{group: [items]} read from a dead-letter file; `path` is the file, `first_line[group]` the line of the
    group's first item (a problem with a group names it)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.first_line: dict[str, int] = {}


def read_replay(path: str | Path) -> Replay:
    """{group: [items]} from a dead-letter file, in file order. The file is data only: JSON lines read
    with core.base.codec, never unpickled or evaluated. Every malformed line is a Problem naming its line."""
    path = str(path)
    problems: list[Problem] = []
    replay = Replay(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(path, 0, "--replay", f"cannot read the dead-letter file: {exc}")]) from None
    # Split on newlines only, as the file is written: str.splitlines() would also cut a line at a U+2028 or a
    # form feed inside an item's text. Each line is decoded alone, so bytes that are not UTF-8 name their line.
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = codec.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("group"), str) or "item" not in record:
                raise codec.Undecodable('not a dead-letter record (it needs "group" and "item")')
        except codec.Undecodable as exc:
            problems.append(Problem(path, number, "--replay", f"malformed dead letter: {exc}"))
            continue
        replay.setdefault(record["group"], []).append(record["item"])
        replay.first_line.setdefault(record["group"], number)
    if problems:
        raise ConfigError(problems)
    if not replay:
        raise ConfigError([Problem(path, 0, "--replay", "the dead-letter file holds no item to replay")])
    return replay


def check_replay(replay: Mapping[str, list[Any]], spec: PipelineSpec) -> None:
    """Every group named in the file must be in the pipeline, or its items would go nowhere; a problem names
    the dead-letter file's line (for a Replay) where the group first appears."""
    where, lines = (replay.path, replay.first_line) if isinstance(replay, Replay) else (spec.path, {})
    unknown = [group for group in replay if group not in {w.name for w in spec.workers}]
    if unknown:
        raise ConfigError(
            [
                Problem(
                    where,
                    lines.get(group, 0),
                    "--replay",
                    f"the dead letters name group {group!r}, "
                    f"which {spec.path} does not have (was the file written by another pipeline?)",
                )
                for group in unknown
            ]
        )


def describe(replay: dict[str, list[Any]]) -> str:
    """'3 items: 2 for YahooFinanceWorker, 1 for WikiWorker'."""
    counts = Counter({group: len(items) for group, items in replay.items()})
    return f"{sum(counts.values())} items: " + ", ".join(f"{n} for {group}" for group, n in counts.most_common())
