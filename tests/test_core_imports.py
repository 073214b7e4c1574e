"""The core package imports without circles, no module reaches for another's private names, and a run
imports only the libraries its stages use."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fixture_workers
from conftest import ROOT, run_stage

CORE = ROOT / "core"


def imports_of(path: Path) -> list[ast.ImportFrom | ast.Import]:
    """Every import in a module, at any depth, except those only type checkers run."""
    found: list[ast.ImportFrom | ast.Import] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def core_modules_imported(path: Path) -> set[str]:
    """The core modules a module imports, top-level or inside a function."""
    names = set()
    for node in imports_of(path):
        if isinstance(node, ast.ImportFrom) and node.module == "core":
            names.update(f"core.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core."):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("core."))
    return {name for name in names if (CORE / f"{name.split('.')[1]}.py").exists()}


def test_core_modules_import_each_other_without_a_circle():
    graph = {f"core.{path.stem}": core_modules_imported(path) for path in CORE.glob("*.py")}
    state: dict[str, str] = {}

    def circle_from(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for nxt in sorted(graph[name]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := circle_from(nxt, path)):
                return found
        state[name] = "done"
        path.pop()
        return None

    circles = [found for name in sorted(graph) if name not in state and (found := circle_from(name, []))]
    assert circles == []


def test_no_core_module_imports_a_private_name():
    private = [f"{path.name}:{node.lineno}: {alias.name} from {node.module}"
               for path in sorted(CORE.glob("*.py")) for node in imports_of(path)
               if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("core", "workers"))
               for alias in node.names if alias.name.startswith("_")]
    assert private == []


@pytest.mark.parametrize("code, heavy", [
    # An asyncio HTTP stage needs aiohttp, not requests (the blocking client's library).
    ("import core.aiohttp_client", "requests"),
    # A PostgreSQL sink talks psycopg2 directly: SQLAlchemy costs a run 0.1 s of CPU before its first row.
    ("from core.database import database_url, open_database\n"
     "open_database(database_url({'DATABASE_URL': 'postgresql://app@127.0.0.1:9/prices'})).close()\n"
     "import workers.postgres_worker", "sqlalchemy"),
    # A pipeline of thread groups (the shipped one, --check) never needs asyncio: 18 ms of start-up; nor does
    # a worker process running threads (the fork server preloads these modules).
    ("import core.cli, yaml_reader, core.modes, core.child, core.loop, core.runners, core.group, core.processes\n"
     "from yaml_reader import YamlPipelineExecutor\n"
     "YamlPipelineExecutor('pipelines/wiki_yahoo_scraper_pipeline.yaml')", "asyncio"),
    # A worker process imports main.py again (multiprocessing does, as __mp_main__): it must run nothing there.
    ("import main", "core.config"),
    # A worker process finds the worker modules without the config stack (PyYAML and the checks: 18 ms a process).
    ("import core.child, core.loop, core.runners\nfrom core.paths import use_module_search_paths\n"
     "use_module_search_paths('pipelines/wiki_yahoo_scraper_pipeline.yaml')", "yaml"),
])
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
    run = run_stage(tmp_path, "AsyncPreloading" if "async" in mode else "Preloading", key=key, sink=sink, items=4,
                    processes=1 if "processes" in mode else 0, env={"PRELOADED_LOG": str(tmp_path / "imports.jsonl")})
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
    from core.imports import preload

    assert preload([]) is None
    code = ("import sys\nfrom core.imports import preload\n"
            "thread = preload(['no_such_module_anywhere', 'fixture_preloaded', 'json'])\nthread.join(10)\n"
            "print(thread.name, thread.is_alive(), 'fixture_preloaded' in sys.modules, 'json' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["preload", "False", "True", "True"]


def test_preload_accepts_one_name_or_a_tuple_of_names_and_nothing_else():
    from core.imports import preload_modules

    def worker(preload):
        return type("Stage", (), {"preload": preload})

    assert preload_modules(worker("lxml.html")) == ("lxml.html",)
    assert preload_modules(worker(["core.http", "lxml.html"])) == ("core.http", "lxml.html")
    assert preload_modules(worker(42)) == () and preload_modules(worker(("json", 1))) == ()
    assert preload_modules(object) == ()
