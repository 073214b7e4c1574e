"""The README and the pages of docs/ stay true: the picture, the test command and the checks match the code and
.ci/run; every flag of the command line is documented and every flag named exists; every environment variable
named is read by the code; every shell block parses, every YAML block loads, every Python block compiles; every
relative link and #anchor resolves; the layers drawn are the import contracts; and the tour's worker runs."""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SHIPPED_PIPELINE, run_main
from core.app.parser import build_parser
from core.pipeline.config import load_pipeline
from core.pipeline.entries import QUEUE_KEYS, WORKER_KEYS
from core.pipeline.graph import mermaid

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
DOCS = [page for page in PAGES if page != README]
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b")
SHELL = ("sh", "bash", "cron")


def text(page: Path) -> str:
    """The page as written."""
    return page.read_text(encoding="utf-8")


def blocks(page: Path, *languages: str) -> list[str]:
    """The fenced blocks of `page` in these languages, in order."""
    return [body for language, body in FENCE.findall(text(page)) if language in languages]


def blocks_in(body: str, language: str) -> list[str]:
    """The fenced blocks of a part of a page in one language."""
    return [block for lang, block in FENCE.findall(body) if lang == language]


def section(page: Path, heading: str) -> str:
    """The text under `heading` (a whole heading line), up to the next heading of the same level or above; a
    `#` line inside a fenced block is no heading."""
    level = len(heading.split(" ", 1)[0])
    lines = text(page).splitlines(keepends=True)
    start = lines.index(f"{heading}\n") + 1
    fenced = False
    for end in range(start, len(lines)):
        fenced ^= lines[end].startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[end]):
            break
    else:
        end = len(lines)
    return "".join(lines[start:end])


def prose(page: Path) -> str:
    """`page` without its fenced blocks."""
    return FENCE.sub("", text(page))


def shell_commands(block: str, language: str) -> list[str]:
    """The command lines of a shell block (for cron, what follows the five time fields)."""
    lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [line.split(None, 5)[5] if language == "cron" else line for line in lines]


# --- the README's own promises ---------------------------------------------------------------------------------


def test_the_picture_is_what_graph_prints_for_the_shipped_pipeline():
    block = blocks(README, "mermaid")[0]

    assert block == mermaid(load_pipeline(SHIPPED_PIPELINE))


def test_ci_runs_the_readme_test_command_word_for_word():
    commands = re.findall(r"```sh\n(.*?)\n```", section(README, "## Two commands"), re.S)
    test_command = next(c for c in commands if "pytest" in c)

    assert test_command in CI


def test_the_readme_checks_are_the_ones_ci_runs():
    [block] = blocks_in(section(README, "## Development"), "sh")
    lines = block.splitlines()

    assert lines[:4] == [
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        ".venv/bin/mypy",
        ".venv/bin/lint-imports",
    ]
    for line in lines:
        assert line in CI or any(ci.endswith(f"&& {line}") for ci in CI), line


# --- flags ------------------------------------------------------------------------------------------------------


def main_flags() -> set[str]:
    """Every option of `python main.py`, short and long."""
    return {option for action in build_parser()._actions for option in action.option_strings}


def test_every_command_line_flag_is_documented():
    flags = [
        action.option_strings[-1]
        for action in build_parser()._actions
        if action.option_strings and action.option_strings[-1] != "--help"
    ]
    table = section(ROOT / "docs" / "COMMAND_LINE.md", "## Flags")
    documented = set(re.findall(r"^\| `(--[a-z-]+)[ `]", table, re.M))
    missing = [flag for flag in flags if flag not in documented]

    assert flags and not missing, f"flags missing from docs/COMMAND_LINE.md: {missing}"


@functools.cache
def help_of(*command: str) -> str:
    """What `COMMAND --help` prints (once per command)."""
    result = subprocess.run([*command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def known_flags(command: str) -> str | set[str]:
    """What the flags of one command may be: main.py's, a benchmark's, pytest's (with the suite's plugins), ruff's."""
    if "main.py" in command or "yaml-pipeline" in command or not command.strip().startswith((".venv", "python")):
        return main_flags()
    if bench := re.search(r"bench/\w+\.py", command):
        return (ROOT / bench.group()).read_text(encoding="utf-8")
    if "pytest" in command:
        return help_of(sys.executable, "-m", "pytest", "-p", "no:cacheprovider")
    if ruff := re.search(r"ruff (\w+)", command):
        return help_of(str(Path(sys.executable).parent / "ruff"), ruff.group(1))
    raise AssertionError(f"a command the test does not know: {command}")


def mentions() -> list[tuple[Path, str]]:
    """Every command, or code span, that names a flag: (page, command)."""
    found = []
    for page in PAGES:
        for language, body in FENCE.findall(text(page)):
            if language in SHELL:
                lines = [line for line in body.splitlines() if FLAG.search(line)]
                parts = [part for line in lines for part in re.split(r"&&|\|\||;|\|", line)]
                found += [(page, part) for part in parts if FLAG.search(part)]
        found += [(page, span) for span in re.findall(r"`([^`\n]+)`", prose(page)) if FLAG.search(span)]
    return found


def test_every_flag_the_pages_name_exists():
    wrong = []
    for page, command in mentions():
        known = known_flags(command)
        for flag in FLAG.findall(command):
            exists = flag in known if isinstance(known, set) else re.search(rf"{flag}\b", known) is not None
            if not exists:
                wrong.append(f"{page.relative_to(ROOT)}: {flag} in {command.strip()!r}")

    assert not wrong, wrong


def test_every_main_py_command_parses():
    parser = build_parser()
    for page in PAGES:
        for language, body in FENCE.findall(text(page)):
            for line in shell_commands(body, language) if language in SHELL else ():
                for part in re.split(r"&&|\|\|", line.split(">>")[0]):
                    words = shlex.split(part, comments=True)
                    if any(word.endswith("main.py") for word in words):
                        args = words[next(i for i, word in enumerate(words) if word.endswith("main.py")) + 1 :]
                        parser.parse_args(args)  # exits (SystemExit) on an unknown flag or a missing value


def test_every_set_the_pages_show_is_valid_for_the_shipped_pipeline():
    sets = {value for page in PAGES for value in re.findall(r"--set (\S+=[^\s`]+)", text(page))} - {"KEY=VALUE"}

    assert sets
    for value in sorted(sets):
        load_pipeline(SHIPPED_PIPELINE, sets=[value])  # raises ConfigError naming the --set


# --- environment variables --------------------------------------------------------------------------------------


def code_text() -> str:
    """The framework's, the workers' and the tests' sources (the tests read TEST_*), this file left out."""
    sources = [*(ROOT / "core").rglob("*.py"), *(ROOT / "workers").rglob("*.py"), *(ROOT / "tests").glob("*.py")]
    return "\n".join(path.read_text(encoding="utf-8") for path in sources if path != Path(__file__))


def test_every_environment_variable_named_is_read_by_the_code():
    code = code_text()
    named = set()
    for page in PAGES:
        for span in re.findall(r"`([^`\n]+)`", prose(page)):
            named |= set(ENV_NAME.findall(re.sub(r"\$\{[^}]*\}", "", span)))  # ${NAME} in a value is the user's
    unread = [name for name in sorted(named) if not re.search(rf"[\"']{name}[\"']", code)]

    assert "DATABASE_URL" in named and not unread, f"named in the docs, read nowhere: {unread}"


# --- blocks -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_shell_block_parses(page):
    for language, body in FENCE.findall(text(page)):
        if language in SHELL:
            script = "\n".join(shell_commands(body, language))
            result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)
            assert result.returncode == 0, f"{page.name}:\n{body}\n{result.stderr}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_yaml_block_loads_and_every_python_block_compiles(page):
    for language, body in FENCE.findall(text(page)):
        if language == "yaml":
            assert isinstance(yaml.safe_load(body), dict), body
        elif language == "python":
            compile(body, f"{page.name} block", "exec")
        elif language == "json":  # JSON lines: a cassette, a dead-letter file
            for line in filter(None, body.splitlines()):
                json.loads(line)
        else:
            assert language in (*SHELL, "mermaid", ""), f"{page.name}: a ```{language} block the test does not check"


def test_the_reference_names_every_key_of_the_pipeline_file():
    block = blocks(ROOT / "docs" / "PIPELINE_FILE.md", "yaml")[0]  # the reference is the page's first
    reference = yaml.safe_load(block)

    assert set(reference) == {"queues", "workers"}
    assert set(reference["queues"][0]) == set(QUEUE_KEYS)
    assert set(reference["workers"][0]) == set(WORKER_KEYS)


# --- links ------------------------------------------------------------------------------------------------------


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of `page`: lower case, punctuation dropped, spaces as hyphens."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.*)$", prose(page), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
    return {slug if count == 0 else f"{slug}-{index}" for slug, count in seen.items() for index in range(count + 1)}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and anchor not in anchors(linked):
            broken.append(f"{target} (no heading {anchor!r} in {linked.name})")

    assert not broken, f"{page.name}: {broken}"


def test_every_page_of_docs_is_linked_from_the_readme():
    linked = set(re.findall(r"\]\(docs/([^)#]+)", text(README)))

    assert {page.name for page in DOCS} <= linked


# --- the architecture -------------------------------------------------------------------------------------------


def test_the_layers_drawn_are_the_import_contracts_and_every_package():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [layers] = [contract["layers"] for contract in contracts if contract["type"] == "layers"]
    order = [name.strip() for layer in layers for name in layer.split("|")]
    drawn = re.findall(r"^    (\w+)\[", blocks(ROOT / "docs" / "ARCHITECTURE.md", "mermaid")[0], re.M)
    packages = {path.parent.name for path in (ROOT / "core").glob("*/__init__.py")}

    assert [name for name in drawn if name != "workers"] == order
    assert set(order) == packages


# --- the tour ---------------------------------------------------------------------------------------------------


def test_the_tour_worker_runs_as_shown(tmp_path):
    step = section(README, "### 4. Add a worker")
    [code], [pipeline] = blocks_in(step, "python"), blocks_in(step, "yaml")
    [command], [shown] = blocks_in(step, "sh"), blocks_in(step, "")
    (tmp_path / "tour_square_worker.py").write_text(code)
    path = tmp_path / "squares.yaml"
    path.write_text(pipeline.replace("location: workers.square_worker", "location: tour_square_worker"))
    assert shlex.split(command)[-2:] == ["--pipeline", "pipelines/squares.yaml"]

    result = run_main(["--pipeline", str(path), "--quiet"], env={"DATA_DIR": str(tmp_path / "data")})

    assert result.returncode == 0, result.stderr
    timed = re.compile(r"finished in [\d.]+s")
    assert timed.sub("", result.stdout) == timed.sub("", shown)


def test_the_tour_test_passes_as_shown(tmp_path):
    step, worker = section(README, "### 5. Test it"), section(README, "### 4. Add a worker")
    [tests], [command], [shown] = blocks_in(step, "yaml"), blocks_in(step, "sh"), blocks_in(step, "")
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "tour_square_worker.py").write_text(blocks_in(worker, "python")[0])
    pipeline = blocks_in(worker, "yaml")[0].replace("location: workers.square_worker", "location: tour_square_worker")
    (pipelines / "squares.yaml").write_text(pipeline)
    (pipelines / "squares.tests.yaml").write_text(tests)
    assert shlex.split(command)[-3:] == ["--pipeline", "pipelines/squares.yaml", "--test"]

    result = run_main(shlex.split(command)[2:], env={"DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    timed = re.compile(r", [\d.]+s\)")
    assert timed.sub(")", result.stdout) == timed.sub(")", shown)
