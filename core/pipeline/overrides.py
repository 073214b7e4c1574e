"""Changing a loaded pipeline file before validation: ${VAR} from the environment, and --set."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from core.pipeline.problems import did_you_mean
from core.pipeline.yaml_lines import LineDict, LineList, SetLine, load_plain

# ${NAME} or ${NAME:-default}; $${...} stays literal.
_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Report = Callable[[int, str, str], None]  # (line, key, message)


def expand_env(raw: Any, env: Mapping[str, str], report: Report, where: str = "", line: int = 1) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string value. A value that is one ${...} alone takes
    the type its text reads as in YAML (so `instances: ${N:-4}` is the integer 4)."""
    if isinstance(raw, LineDict):
        for key, value in raw.items():
            raw[key] = expand_env(value, env, report, f"{where}.{key}" if where else str(key), raw.line_of(key))
        return raw
    if isinstance(raw, LineList):
        for index, value in enumerate(raw):
            raw[index] = expand_env(value, env, report, f"{where}[{index}]", raw.line_of(index))
        return raw
    if not isinstance(raw, str) or "${" not in raw:
        return raw

    def substitute(match: re.Match) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name in env:
            return env[name]
        if default is not None:
            return default
        report(line, where, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
        return ""

    expanded = _VAR.sub(substitute, raw)
    whole = _VAR.fullmatch(raw)
    return _scalar(expanded) if whole and not whole.group(1) else expanded


def apply_sets(raw: LineDict, sets: Sequence[str], report: Callable[[SetLine, str, str], None]) -> None:
    """Apply each `section.name.key[.key...]=value` (section: queues or workers; value read as YAML)."""
    for argument in sets:
        origin = SetLine(f"--set {argument}")
        path, sep, text = argument.partition("=")
        parts = path.strip().split(".")
        if not sep or len(parts) < 3 or parts[0] not in ("queues", "workers"):
            report(origin, "--set", "expected section.name.key=value, e.g. workers.YahooFinanceWorker.instances=16")
            continue
        section, name, keys = parts[0], parts[1], parts[2:]
        found = raw.get(section)
        entries = found if isinstance(found, LineList) else LineList()
        entry = next((e for e in entries if isinstance(e, LineDict) and e.get("name") == name), None)
        if entry is None:
            names = [e.get("name") for e in entries if isinstance(e, LineDict)]
            report(origin, f"{section}.{name}", f"no such entry in {section}{did_you_mean(name, names)}")
            continue
        entries[entries.index(entry)] = target = _copy(entry)  # an anchor may share it with another entry
        for key in keys[:-1]:
            child = target.get(key)
            if isinstance(child, LineDict):
                child = _copy(child)
            else:
                child = LineDict()
                child.line, child.key_lines = origin, {}
                target.key_lines[key] = origin
            target[key] = child
            target = child
        target[keys[-1]] = _yaml_value(text)
        target.key_lines[keys[-1]] = origin


def _copy(mapping: LineDict) -> LineDict:
    """A shallow copy that keeps the line numbers."""
    copy = LineDict(mapping)
    copy.line, copy.key_lines = mapping.line, dict(mapping.key_lines)
    return copy


def _yaml_value(text: str) -> Any:
    """Text as YAML reads it (16 -> int, [a, b] -> list); text that is not YAML stays text."""
    try:
        return load_plain(text)
    except yaml.YAMLError:
        return text


def _scalar(text: str) -> Any:
    """A number or boolean as YAML reads it (16, 0.5, true); "" as nothing; any other text unchanged."""
    if text == "":
        return None
    try:
        value = load_plain(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool)) else text
