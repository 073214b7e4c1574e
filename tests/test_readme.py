"""The README stays true: its picture, its test command and its flags match the code."""

from __future__ import annotations

import re

from conftest import ROOT, SHIPPED_PIPELINE
from core.pipeline.config import load_pipeline
from core.pipeline.graph import mermaid

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_picture_is_what_graph_prints_for_the_shipped_pipeline():
    block = re.search(r"```mermaid\n(.*?)```", README, re.S).group(1)

    assert block == mermaid(load_pipeline(SHIPPED_PIPELINE))


def test_ci_runs_the_readme_test_command_word_for_word():
    commands = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(c for c in commands if "pytest" in c)

    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_command_line_flag_is_documented():
    from core.app.cli import build_parser

    flags = [
        action.option_strings[-1]
        for action in build_parser()._actions
        if action.option_strings and action.option_strings[-1] != "--help"
    ]
    missing = [flag for flag in flags if f"`{flag}" not in README]

    assert flags and not missing, f"flags missing from the README: {missing}"
