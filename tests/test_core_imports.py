"""The framework's imports: every one of them is seen (module level, type-only under TYPE_CHECKING, inside a
function, a submodule named in `from x import y`, `importlib.import_module` of a constant name), no module
reaches for another's private names, and a run imports only the libraries its stages use.

Import circles and upward imports are counted over core/, workers/, yaml_reader.py and main.py: there are none,
and the layers inside core/ (import-linter's contracts in pyproject.toml) are checked by test_import_contracts.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import fixture_workers
import pytest

from conftest import ROOT, run_stage

#: What the checks read: the framework, the shipped workers, the executor and the command line.
CHECKED = ("core", "workers", "yaml_reader.py", "main.py")
#: What each part may import, its own part included (STYLE.md "Layers": the app above the framework, and the
#: framework never imports workers/, the user's package, which imports the framework).
MAY_IMPORT = {
    "core": {"core"},
    "workers": {"core", "workers"},
    "yaml_reader": {"core", "yaml_reader"},
    "main": {"core", "yaml_reader", "main"},
}


@dataclass(frozen=True)
class Import:
    """One module of the project imported by another: where, and how."""

    importer: str
    line: int
    imported: str
    how: str  # "module level", "type-only", "in a function" or "import_module"
    names: tuple[str, ...] = ()  # what `from imported import ...` takes (the names, not submodules)

    def __str__(self) -> str:
        return f"{self.importer}:{self.line}: {self.imported} ({self.how})"


def project_modules(root: Path, checked: tuple[str, ...] = CHECKED) -> dict[str, Path]:
    """The dotted name of every module under `checked` (folders are packages, files are top-level modules)."""
    found: dict[str, Path] = {}
    for part in checked:
        path = root / part
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            dotted = file.relative_to(root).with_suffix("").parts
            found[".".join(dotted[:-1] if dotted[-1] == "__init__" else dotted)] = file
    return found


def imports_in(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import of a project module by module `name`, at any depth, type-only ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def add(node: ast.AST, dotted: str, how: str, names: tuple[str, ...] = ()) -> None:
        # `import a.b.c` runs a, a.b and a.b.c: each is imported
        parts = dotted.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if prefix in modules and prefix != name:
                found.append(Import(name, node.lineno, prefix, how, names if end == len(parts) else ()))

    def base_of(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
        return ".".join([*anchor, *([node.module] if node.module else [])])

    def visit(node: ast.AST, how: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = how
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and how == "module level":
                inner = "in a function"
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                # The body runs only for type checkers; the else branch at run time, like the code around it.
                visit(ast.Module(body=child.body, type_ignores=[]), "type-only")
                visit(ast.Module(body=child.orelse, type_ignores=[]), inner)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(child, alias.name, inner)
            elif isinstance(child, ast.ImportFrom):
                base = base_of(child)
                submodules = [alias.name for alias in child.names if f"{base}.{alias.name}" in modules]
                add(child, base, inner, tuple(alias.name for alias in child.names if alias.name not in submodules))
                for submodule in submodules:
                    add(child, f"{base}.{submodule}", inner)
            elif isinstance(child, ast.Call) and _imported_by_name(child) is not None:
                add(child, _imported_by_name(child), "import_module")
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), "module level")
    return found


def _imported_by_name(call: ast.Call) -> str | None:
    """The module `importlib.import_module("name")` (or `import_module`, `__import__`) imports, when the name
    is a constant."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in ("import_module", "__import__") or not call.args:
        return None
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def project_imports(root: Path = ROOT, checked: tuple[str, ...] = CHECKED) -> list[Import]:
    """Every import of a project module by another, over the modules under `checked`."""
    modules = project_modules(root, checked)
    return [found for name, path in modules.items() for found in imports_in(name, path, modules)]


def circles_in(imports: list[Import]) -> list[list[str]]:
    """The import circles: each set of modules that reach each other by imports (a strongly connected
    component of the import graph, of two or more), as its sorted modules; sorted."""
    graph: dict[str, set[str]] = {}
    for found in imports:
        graph.setdefault(found.importer, set()).add(found.imported)
    reach = {name: _reachable(graph, name) for name in graph}
    components = {
        tuple(sorted(other for other in reached if name in reach.get(other, ())))
        for name, reached in reach.items()
        if name in reached
    }
    return sorted(list(component) for component in components)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others (itself only through a circle)."""
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def upward_imports(imports: list[Import]) -> list[Import]:
    """Imports of a part the importer's part may not import (MAY_IMPORT)."""
    return [found for found in imports if found.imported.split(".")[0] not in MAY_IMPORT[found.importer.split(".")[0]]]


def test_no_import_circle_at_all():
    circles = circles_in(project_imports())
    assert circles == [], _described(circles)


def test_no_upward_import_at_all():
    assert [str(found) for found in upward_imports(project_imports())] == []


def test_the_checker_sees_every_kind_of_import(tmp_path):
    """On a package of its own: the checks cannot go blind to an import that only type checkers run, one
    inside a function, a submodule named in `from x import y`, a relative one, or importlib's."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from __future__ import annotations\nfrom typing import TYPE_CHECKING\n\n"
        "if TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "def make():\n    from pkg import a\n    return a\n",
        "pkg/c.py": "import importlib\n\nLATER = importlib.import_module('pkg.d')\n",
        "pkg/d.py": "from . import c\nfrom .a import _hidden\n",
        "top.py": "import json\nimport pkg.b\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    imports = project_imports(tmp_path, ("pkg", "top.py"))

    assert {(found.importer, found.imported, found.how) for found in imports if found.imported != "pkg"} == {
        ("pkg.a", "pkg.b", "type-only"),
        ("pkg.b", "pkg.a", "in a function"),
        ("pkg.c", "pkg.d", "import_module"),
        ("pkg.d", "pkg.c", "module level"),
        ("pkg.d", "pkg.a", "module level"),
        ("top", "pkg.b", "module level"),
    }
    assert circles_in(imports) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    assert private_names(imports) == ["pkg.d:2: _hidden from pkg.a"]


def _described(circles: list[list[str]]) -> str:
    return "\n".join(" <-> ".join(circle) for circle in circles)


def private_names(imports: list[Import]) -> list[str]:
    """Each private name one module takes from another."""
    return [
        f"{found.importer}:{found.line}: {name} from {found.imported}"
        for found in imports
        for name in found.names
        if name.startswith("_")
    ]


def test_no_module_imports_a_private_name():
    assert private_names(project_imports()) == []


@pytest.mark.parametrize(
    "code, heavy",
    [
        # An asyncio HTTP stage needs aiohttp, not requests (the blocking client's library).
        ("import core.http.aiohttp_client", "requests"),
        # A PostgreSQL sink talks psycopg2 directly: SQLAlchemy costs a run 0.1 s of CPU before its first row.
        (
            "from core.storage.database import open_database\nfrom core.storage.settings import database_url\n"
            "open_database(database_url({'DATABASE_URL': 'postgresql://app@127.0.0.1:9/prices'})).close()\n"
            "import workers.postgres_worker",
            "sqlalchemy",
        ),
        # A pipeline of thread groups (the shipped one, --check) never needs asyncio: 18 ms of start-up; nor does
        # a worker process running threads (the fork server preloads these modules).
        (
            "import core.app.cli, yaml_reader, core.modes.choice, core.modes.child, core.run.loop, core.modes.threads, core.run.group, core.modes.processes\n"
            "from core.app.executor import YamlPipelineExecutor\n"
            "YamlPipelineExecutor('pipelines/wiki_yahoo_scraper_pipeline.yaml')",
            "asyncio",
        ),
        # A worker process imports main.py again (multiprocessing does, as __mp_main__): it must run nothing there.
        ("import main", "core.pipeline.config"),
        # A worker process finds the worker modules without the config stack (PyYAML and the checks: 18 ms a process).
        (
            "import core.modes.child, core.run.loop, core.modes.threads\nfrom core.base.paths import use_module_search_paths\n"
            "use_module_search_paths('pipelines/wiki_yahoo_scraper_pipeline.yaml')",
            "yaml",
        ),
    ],
)
def test_a_run_imports_only_the_libraries_its_stages_use(code, heavy):
    check = f"{code}\nimport sys\nprint({heavy!r} in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", f"{heavy} was imported"


@pytest.mark.parametrize("mode", ["threads", "async", "processes", "async in processes"])
def test_the_modules_a_worker_preloads_are_imported_before_it_needs_them(tmp_path, mode):
    """Worker.preload: imported by the runner's "preload" thread as the run starts, or (only) in the fork server
    before a worker process is forked from it; the worker itself never imports the module."""
    key, sink = str(tmp_path / "state"), str(tmp_path / "sink")
    run = run_stage(
        tmp_path,
        "AsyncPreloading" if "async" in mode else "Preloading",
        key=key,
        sink=sink,
        items=4,
        processes=1 if "processes" in mode else 0,
        env={"PRELOADED_LOG": str(tmp_path / "imports.jsonl")},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(fixture_workers.collected(sink)) == [0, 1, 2, 3]
    imports = [json.loads(line) for line in (tmp_path / "imports.jsonl").read_text().splitlines()]
    (state,) = fixture_workers.collected(key)
    imported_in = state["imported_in"]
    assert imported_in is not None, "the module the worker preloads was never imported"
    assert imports == [imported_in], "imported more than once: not by a worker process's parent"
    if "processes" in mode:  # in the fork server, before this worker process was forked from it
        assert imported_in["pid"] != state["pid"]
    else:
        assert imported_in == {"pid": state["pid"], "thread": "preload"}


def test_preload_imports_in_order_and_leaves_failures_to_the_worker():
    from core.pipeline.imports import preload

    assert preload([]) is None
    code = (
        "import sys\nfrom core.pipeline.imports import preload\n"
        "thread = preload(['no_such_module_anywhere', 'fixture_preloaded', 'json'])\nthread.join(10)\n"
        "print(thread.name, thread.is_alive(), 'fixture_preloaded' in sys.modules, 'json' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["preload", "False", "True", "True"]


def test_preload_accepts_one_name_or_a_tuple_of_names_and_nothing_else():
    from core.pipeline.imports import preload_modules

    def worker(preload):
        return type("Stage", (), {"preload": preload})

    assert preload_modules(worker("lxml.html")) == ("lxml.html",)
    assert preload_modules(worker(["core.http.client", "lxml.html"])) == ("core.http.client", "lxml.html")
    assert preload_modules(worker(42)) == () and preload_modules(worker(("json", 1))) == ()
    assert preload_modules(object) == ()


# --- the layers of core/ (import-linter, pyproject.toml) ----------------------------------------------------


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` (import-linter) on the tree at `root`, with that tree's pyproject.toml."""
    command = [
        str(Path(sys.executable).parent / "lint-imports"),
        "--config",
        str(root / "pyproject.toml"),
        "--no-cache",
    ]
    return subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)}
    )


def test_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "importer, line",
    [
        ("core/base/errors.py", "from core.app import cli"),  # a layer reaching up
        ("core/transport/local.py", "from core.run import ledger"),  # a transport reaching into the run
        ("core/run/loop.py", "from workers import base"),  # the framework reaching into the user's package
        ("core/transport/redis/client.py", "from core.http import policy"),  # a sibling reaching for another
    ],
)
def test_the_contracts_catch_an_import_that_breaks_them(tmp_path, importer, line):
    for part in ("core", "workers"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / importer
    target.write_text(target.read_text() + f"\n\ndef _reaching():\n    {line}  # noqa\n")

    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "BROKEN" in result.stdout or "broken" in result.stdout
