"""`main.py --check` on every file a user can write: YAML tags a value cannot have (`!!int abc`, `!!seq abc`),
and directed and random mutations of the shipped pipeline file. Each ends in exit 0 or in exit 2 with every
problem as `file:line: key: message`, never in a traceback."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
from pipeline_text import line

from conftest import ROOT, SHIPPED_PIPELINE, run_main
from core.app import cli
from core.pipeline.config import ConfigError, load_pipeline

SHIPPED = Path(SHIPPED_PIPELINE).read_text(encoding="utf-8")

# The issue's tags first: each ended in a traceback (ValueError, KeyError, AttributeError), exit 1.
BAD_TAGS = [
    "!!float abc",
    "!!int abc",
    "!!int 1.5",
    "!!bool maybe",
    "!!timestamp 2001-13-45",
    "!!seq abc",
    "!!map abc",
    "!!int ''",
    "!!float ''",
    "!!int +",
    "!!timestamp abc",
    "!!timestamp 2001-01-01T00:00:00+99:00",
    "!!int " + "9" * 5000,
    '"\\ud800"',
]

# Values put in place of every value and list item of the shipped file; VALUES too in place of those of EVERY_VALUE.
CORE = BAD_TAGS[:7] + ["", "[a, b]", '"\\ud800"']
VALUES = BAD_TAGS + [
    "",
    "~",
    "[a, b]",
    "{a: b}",
    "{[a]: b}",
    "&a x",
    "*a",
    "*nowhere",
    ".nan",
    ".inf",
    "1e400",
    "99999999999999999999999999",
    "-1",
    "0",
    "true",
    "2001-01-01",
    "!!binary AAAA",
    "!!binary '!!!'",
    "!!set {a: null}",
    "!!omap [a: 1]",
    "!!str [a]",
    "!!python/name:os.system",
    "!foo bar",
    "{1: 2}",
    "{2001-01-01: x}",
    "{<<: [x]}",
    "!!null x",
    "|\n  text",
    "[[[[[[[[]]]]]]]]",
]
EVERY_VALUE = (
    "queues:",
    "maxsize:",
    "- name: WikiWorker",
    "instances: 4",
    "- https:",
    "params:",
    "requests_per_second:",
)
# Keys put into each mapping of the shipped file.
KEYS = ["1", "2001-01-01", "<<", "? [a]", "!!int x"]
SETS = [
    "workers.YahooFinanceWorker.instances",
    "workers.YahooFinanceWorker.params",
    "workers.YahooFinanceWorker.params.chart_url",
    "queues.SymbolQueue.maxsize",
    "queues.SymbolQueue",
]
MUTATION_CHARS = list(":-[]{}!&*?|>'\"#%@`, \n\t") + ["!!int ", "!!seq ", "!!map ", "<<: ", "&a ", "*a "]


def directed_mutations() -> list[str]:
    """The shipped file with one value, list item or key replaced or added, for every place it has one."""
    lines = SHIPPED.splitlines()
    files = []
    for index, text in enumerate(lines):
        values = VALUES if text.strip().startswith(EVERY_VALUE) else CORE
        entry = re.match(r"^(\s*(?:- )?[\w_]+:)\s*(\S.*)?$", text)
        if entry:
            files += ["\n".join(lines[:index] + [f"{entry.group(1)} {value}"] + lines[index + 1 :]) for value in values]
            indent = re.match(r"^\s*", text).group(0) + ("  " if text.lstrip().startswith("- ") else "")
            files += ["\n".join(lines[: index + 1] + [f"{indent}{key}: 1"] + lines[index + 1 :]) for key in KEYS]
        item = re.match(r"^(\s*- )([^:]+)$", text)
        if item:
            files += ["\n".join(lines[:index] + [item.group(1) + value] + lines[index + 1 :]) for value in values]
    return files


def random_mutations(count: int, seed: int) -> list[str]:
    """The shipped file with 1-4 random edits each: a YAML character or tag inserted, a few characters cut,
    two lines swapped."""
    rng = random.Random(seed)
    files = []
    for _ in range(count):
        text = SHIPPED
        for _ in range(rng.randint(1, 4)):
            at, edit = rng.randrange(len(text)), rng.random()
            if edit < 0.4:
                text = text[:at] + rng.choice(MUTATION_CHARS) + text[at:]
            elif edit < 0.7:
                text = text[:at] + text[at + rng.randint(1, 5) :]
            else:
                lines = text.splitlines()
                a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[a], lines[b] = lines[b], lines[a]
                text = "\n".join(lines)
        files.append(text)
    return files


@pytest.fixture
def check(monkeypatch, capsys, tmp_path):
    """`main.py --check` in this process (a few ms, not a process start): (exit code, stderr lines)."""
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)  # the test's logging stays as it is
    monkeypatch.setenv("ENV_FILE", os.devnull)
    monkeypatch.delenv("PIPELINE_LOCATION", raising=False)
    path = tmp_path / "pipeline.yaml"

    def run(text: str, *args: str) -> tuple[int, list[str]]:
        path.write_text(text, encoding="utf-8")
        capsys.readouterr()
        code = cli.main(["--check", "--pipeline", str(path), *args])
        return code, capsys.readouterr().err.splitlines()

    run.path = path
    return run


def assert_answered(check, text: str, *args: str) -> int:
    """Exit 0, or exit 2 with at least one problem and each in the `file:line: key: message` form."""
    code, err = check(text, *args)
    assert code in (0, 2), text
    if code == 2:
        assert any(entry.startswith((f"{check.path}:", "--set ")) for entry in err), err
        # A --set problem starts with the flag as given, which may hold a newline; the file's name their line.
        in_file = [entry for entry in err if entry.startswith(f"{check.path}:")]
        assert all(re.match(rf"^{re.escape(str(check.path))}:\d+: .+?: .+", p) for p in in_file), in_file
    return code


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_a_value_its_tag_cannot_read_is_a_problem_at_its_line(tmp_path, tag):
    text = SHIPPED.replace("maxsize: 1000", f"maxsize: {tag}", 1)
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)

    assert [(p.line, p.key) for p in caught.value.problems] == [(line(text, "maxsize"), "yaml")]


@pytest.mark.parametrize("tag", BAD_TAGS[:7])
def test_check_of_the_issues_tags_exits_2_naming_the_line(tmp_path, tag):
    path = tmp_path / "pipeline.yaml"
    path.write_text(SHIPPED.replace("maxsize: 1000", f"maxsize: {tag}", 1), encoding="utf-8")

    result = run_main(["--check", "--pipeline", str(path)], env={"PYTHONPATH": str(ROOT)})

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{path}:{line(SHIPPED, 'maxsize')}: yaml: invalid YAML: ")


def test_every_directed_mutation_of_the_shipped_file_is_answered(check):
    files = directed_mutations()
    codes = [assert_answered(check, text) for text in files]

    assert len(files) > 700 and codes.count(2) > 500  # the mutations do break the file


def test_every_random_mutation_of_the_shipped_file_is_answered(check):
    codes = [assert_answered(check, text) for text in random_mutations(300, seed=16)]

    assert codes.count(2) > 100 and codes.count(0) > 10


@pytest.mark.parametrize("key", SETS)
def test_a_set_value_its_tag_cannot_read_is_answered(check, key):
    for value in VALUES:
        assert_answered(check, SHIPPED, "--set", f"{key}={value}")


def test_an_environment_value_its_tag_cannot_read_is_answered(check, monkeypatch):
    text = SHIPPED.replace("instances: 4", "instances: ${MUTATED}")
    for value in BAD_TAGS:
        monkeypatch.setenv("MUTATED", value)
        assert assert_answered(check, text) == 2, value
