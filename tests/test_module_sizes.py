"""The framework stays in rooms a reader can hold in mind: no module of core/ or workers/ over 300 lines, no class
with more than 15 public methods (issue 17). A module or class that grows past them is split along its seams."""

from __future__ import annotations

import ast

import pytest

from conftest import ROOT

MAX_LINES = 300
MAX_PUBLIC_METHODS = 15
SOURCES = sorted(path for folder in ("core", "workers") for path in (ROOT / folder).rglob("*.py"))


def public_methods(cls: ast.ClassDef) -> list[str]:
    """Names of the methods (properties too) that do not start with an underscore."""
    return [
        node.name
        for node in cls.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_")
    ]


def test_no_module_is_over_300_lines():
    sizes = {str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines()) for path in SOURCES}
    over = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}

    assert len(sizes) > 40  # the tree was found
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_no_class_has_more_than_15_public_methods():
    crowded = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and len(methods := public_methods(node)) > MAX_PUBLIC_METHODS:
                crowded[f"{path.relative_to(ROOT)}:{node.name}"] = len(methods)

    assert not crowded, f"classes with more than {MAX_PUBLIC_METHODS} public methods: {crowded}"


@pytest.mark.parametrize(
    "source, count",
    [
        ("class A:\n" + "".join(f"    def m{i}(self): pass\n" for i in range(16)), 16),
        ("class A:\n    def _hidden(self): pass\n    @property\n    def shown(self): return 1\n", 1),
    ],
)
def test_public_methods_are_counted_as_a_reader_sees_them(source, count):
    cls = ast.parse(source).body[0]

    assert len(public_methods(cls)) == count
