"""The pipeline check finds every problem in one pass, finds worker modules beside the pipeline file, runs a
class's own params check, and refuses a file whose aliases expand too far at once."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from pipeline_text import line, write

from conftest import ROOT, run_main
from core.base.paths import module_search_paths, use_module_search_paths
from core.pipeline.config import ConfigError, load_pipeline
from core.pipeline.yaml_limits import MAX_ALIAS_NODES, MAX_DEPTH

VALID = """\
queues:
  - name: Numbers
workers:
  - name: Source
    location: fixture_workers
    class: Source
    input_values: [1, 2, 3]
    output_queues: [Numbers]
  - name: Sink
    location: fixture_workers
    class: Collect
    input_queue: Numbers
    params:
      key: check-test
"""

# A worker module that a test writes beside its pipeline file, under a name no other test uses.
TEMPLATED = '''\
from workers.base import Worker


class Templated(Worker):
    """Passes items on; its `url` must name {symbol}."""

    def __init__(self, *, url: str = "http://127.0.0.1:9/{symbol}", **kwargs):
        super().__init__(**kwargs)
        self.url = url

    @classmethod
    def check_params(cls, params):
        if "{symbol}" not in params.get("url", "{symbol}"):
            return [("url", "must contain {symbol}, where each item goes")]
        return []

    def process(self, item):
        return [item]


class Refusing(Templated):
    """Its own params check fails."""

    @classmethod
    def check_params(cls, params):
        raise ValueError("boom")
'''


def problems(path: Path) -> list[str]:
    """The problems load_pipeline finds, as printed."""
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    return [str(p) for p in caught.value.problems]


@pytest.fixture
def module_name(monkeypatch) -> str:
    """A fresh module name; sys.path and sys.modules are as before once the test ends."""
    name = f"beside_{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def templated(module_name: str) -> str:
    """VALID with both workers of class Templated from `module_name`, without params."""
    return (
        VALID.replace("fixture_workers", module_name)
        .replace("class: Source", "class: Templated")
        .replace("class: Collect", "class: Templated")
        .replace("\n    params:\n      key: check-test", "")
    )


def beside(tmp_path: Path, module_name: str, text: str, class_name: str = "Templated", **params: str) -> Path:
    """A pipeline whose Sink is `class_name` from module `module_name`, written beside the pipeline file."""
    (tmp_path / f"{module_name}.py").write_text(TEMPLATED)
    body = "".join(f"\n      {key}: {value}" for key, value in params.items())
    return write(
        tmp_path,
        text.replace(
            "location: fixture_workers\n    class: Collect", f"location: {module_name}\n    class: {class_name}"
        ).replace("\n      key: check-test", body),
    )


# --- every problem in one pass ----------------------------------------------------------------------


@pytest.mark.parametrize("schema_first", [True, False], ids=["schema-first", "class-first"])
def test_schema_problem_in_one_worker_and_misspelt_class_in_another_are_both_reported(tmp_path, schema_first):
    text = (
        VALID.replace("class: Source\n", "class: Source\n    instances: zero\n").replace(
            "class: Collect", "class: Colect"
        )
        if schema_first
        else VALID.replace("class: Source\n", "class: Sauce\n").replace(
            "input_queue: Numbers\n", "input_queue: Numbers\n    instances: zero\n"
        )
    )
    path = write(tmp_path, text)

    schema = (
        f"{path}:{line(text, 'instances: zero')}: workers[{0 if schema_first else 1}].instances: "
        "must be an integer, got a string"
    )
    misspelt = (
        f"{path}:{line(text, 'class: Colect')}: workers.Sink.class: module 'fixture_workers' has no class "
        "'Colect'; did you mean 'Collect'?"
        if schema_first
        else f"{path}:{line(text, 'class: Sauce')}: workers.Source.class: module 'fixture_workers' has no class "
        "'Sauce'; did you mean 'Source'?"
    )
    assert problems(path) == ([schema, misspelt] if schema_first else [misspelt, schema])


def test_an_entry_with_broken_params_is_not_checked_against_its_class(tmp_path):
    text = VALID.replace("class: Source\n", "class: Source\n    params: [gate]\n").replace(
        "class: Collect", "class: Colect"
    )
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'params: [gate]')}: workers[0].params: must be a mapping, got a list",
        f"{path}:{line(text, 'class: Colect')}: workers.Sink.class: module 'fixture_workers' has no class "
        "'Colect'; did you mean 'Collect'?",
    ]


def test_a_worker_without_its_location_does_not_make_its_queue_unread(tmp_path):
    text = VALID.replace(
        "location: fixture_workers\n    class: Collect", "locaton: fixture_workers\n    class: Collect"
    ).replace("class: Source", "class: Sauce")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'class: Sauce')}: workers.Source.class: module 'fixture_workers' has no class "
        "'Sauce'; did you mean 'Source'?",
        f"{path}:{line(text, 'name: Sink')}: workers[1].location: missing required key",
        f"{path}:{line(text, 'locaton')}: workers[1].locaton: unknown key; did you mean 'location'?",
    ]


def test_queue_names_are_not_called_unknown_when_the_queues_section_is_broken(tmp_path):
    text = VALID.replace("queues:\n  - name: Numbers\n", "queues: {name: Numbers}\n").replace(
        "class: Source", "class: Sauce"
    )
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:1: pipeline.queues: must be a list, got a mapping",
        f"{path}:{line(text, 'class: Sauce')}: workers.Source.class: module 'fixture_workers' has no class "
        "'Sauce'; did you mean 'Source'?",
    ]


# --- processes and backend (contracts for running in processes and on Redis) ---------------------------


def test_processes_and_backend_are_read_with_their_defaults(tmp_path):
    text = VALID.replace("  - name: Numbers\n", "  - name: Numbers\n    backend: redis\n").replace(
        "class: Collect\n", "class: Collect\n    processes: 2\n"
    )

    spec = load_pipeline(write(tmp_path, text))

    assert spec.queues["Numbers"].backend == "redis"
    assert [(w.name, w.processes) for w in spec.workers] == [("Source", 0), ("Sink", 2)]
    assert load_pipeline(write(tmp_path, VALID)).queues["Numbers"].backend == "local"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("processes", "-1", "workers[1].processes: must be at least 0, got -1"),
        ("processes", "two", "workers[1].processes: must be an integer, got a string"),
        ("backend", "Redis", "queues[0].backend: must be 'local' or 'redis', got 'Redis'; did you mean 'redis'?"),
        ("backend", "5", "queues[0].backend: must be a string, got an integer"),
    ],
)
def test_processes_and_backend_are_validated(tmp_path, key, value, message):
    entry = "  - name: Numbers\n" if key == "backend" else "class: Collect\n"
    text = VALID.replace(entry, f"{entry}    {key}: {value}\n")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, f'{key}: {value}')}: {message}"]


# --- where worker modules are found -------------------------------------------------------------------


def test_module_beside_the_pipeline_file_is_found(tmp_path, module_name):
    spec = load_pipeline(beside(tmp_path, module_name, VALID))

    assert spec.classes["Sink"].__module__ == module_name
    assert sys.modules[module_name].__file__ == str(tmp_path / f"{module_name}.py")


def test_missing_module_message_says_where_it_looked(tmp_path, module_name, monkeypatch):
    (tmp_path / "pipes").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    text = VALID.replace(
        "location: fixture_workers\n    class: Collect", f"location: {module_name}\n    class: Collect"
    )
    path = write(tmp_path / "pipes", text)

    assert problems(path) == [
        f"{path}:{line(text, module_name)}: workers.Sink.location: cannot import module '{module_name}': No module "
        f"named '{module_name}'; looked on PYTHONPATH, in the installed packages and in {tmp_path / 'pipes'} "
        f"(the pipeline file's folder), {tmp_path / 'cwd'} (the working directory), {ROOT} (the project folder)"
    ]


def test_search_paths_go_after_sys_path_once_and_follow_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry])  # "" would be the working directory
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "a" / "one.yaml", tmp_path / "b" / "two.yaml"

    assert module_search_paths(first) == [str(first.parent), str(tmp_path), str(ROOT)]
    assert use_module_search_paths(first) == module_search_paths(first)
    after_first = list(sys.path)
    # Appended, so nothing beside a pipeline shadows what was there; the project folder was there already.
    assert after_first[-2:] == [str(first.parent), str(tmp_path)]

    use_module_search_paths(first)
    assert sys.path == after_first

    use_module_search_paths(second)
    assert sys.path == after_first[:-2] + [str(tmp_path), str(second.parent)]


def test_check_finds_a_module_beside_the_pipeline_without_pythonpath(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text(TEMPLATED)
    path = write(tmp_path, templated(module_name))

    result = run_main(["--check", "--pipeline", str(path)], env={"DATA_DIR": str(tmp_path / "data")}, timeout_s=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK, 1 queues, 2 worker groups\n")


def test_check_finds_a_module_in_the_working_directory(tmp_path, module_name):
    (tmp_path / "pipes").mkdir()
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / f"{module_name}.py").write_text(TEMPLATED)
    path = write(tmp_path / "pipes", templated(module_name))

    result = run_main(
        ["--check", "--pipeline", str(path)],
        env={"DATA_DIR": str(tmp_path / "data")},
        cwd=tmp_path / "cwd",
        timeout_s=60,
    )

    assert result.returncode == 0, result.stderr


# --- a class's own params check --------------------------------------------------------------------------


def test_class_params_check_names_the_param_and_its_line(tmp_path, module_name):
    path = beside(tmp_path, module_name, VALID, url="http://127.0.0.1:9/chart")

    assert problems(path) == [
        f"{path}:{line(path.read_text(), 'url:')}: workers.Sink.params.url: "
        "must contain {symbol}, where each item goes"
    ]


def test_class_params_check_sees_only_the_params_the_generic_check_passed(tmp_path, module_name):
    path = beside(tmp_path, module_name, VALID, url="5")  # Templated.check_params would fail on an int

    assert problems(path) == [f"{path}:{line(path.read_text(), 'url:')}: workers.Sink.params.url: must be str, got 5"]


def test_class_params_check_runs_beside_other_param_problems(tmp_path, module_name):
    path = beside(tmp_path, module_name, VALID, colour="red", url="http://127.0.0.1:9/chart")
    text = path.read_text()

    assert problems(path) == [
        f"{path}:{line(text, 'colour:')}: workers.Sink.params.colour: Templated takes no parameter 'colour' "
        "(it takes: url)",
        f"{path}:{line(text, 'url:')}: workers.Sink.params.url: must contain {{symbol}}, where each item goes",
    ]


def test_class_params_check_that_fails_is_a_problem_not_a_crash(tmp_path, module_name):
    path = beside(tmp_path, module_name, VALID, class_name="Refusing", url="http://127.0.0.1:9/{symbol}")

    assert problems(path) == [
        f"{path}:{line(path.read_text(), 'params:')}: workers.Sink.params: "
        "Refusing.check_params failed: ValueError: boom"
    ]


# --- files that would expand past any use ---------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    """A valid pipeline whose Source's input_values are nine strings, nested `levels` times by nine aliases each."""
    names = "abcdefghij"
    anchors = ['  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    anchors += [
        f"  {name}: &{name} [{', '.join([f'*{names[i]}'] * 9)}]" for i, name in enumerate(names[1 : levels + 1])
    ]
    return (
        "x-laughs:\n"
        + "\n".join(anchors)
        + "\n"
        + VALID.replace("input_values: [1, 2, 3]", f"input_values: *{names[levels]}")
    )


def test_alias_bomb_is_refused_at_once_naming_its_line(tmp_path):
    text = alias_bomb(8)  # 9**9 strings once expanded
    path = write(tmp_path, text)

    result = run_main(["--check", "--pipeline", str(path)], timeout_s=20)  # today it runs for minutes

    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"{path}:{line(text, 'f: &f')}: yaml: aliases expand the file by more than {MAX_ALIAS_NODES:,} values by "
        "here (this *e alone adds 66,430); write the values out or use fewer aliases"
    )


def test_alias_expansion_past_the_limit_is_a_config_error_naming_its_line(tmp_path):
    text = alias_bomb(5)  # 9**6 strings: slow to walk, not yet minutes
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'f: &f')}: yaml: aliases expand the file by more than "
        f"{MAX_ALIAS_NODES:,} values by here (this *e alone adds 66,430); write the values "
        "out or use fewer aliases"
    ]


def test_alias_inside_its_own_value_is_refused(tmp_path):
    text = VALID.replace("input_values: [1, 2, 3]", "input_values: &loop [1, *loop]")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, '*loop')}: yaml: alias *loop is used inside the value it names, "
        "which would make that value endless"
    ]


def test_nesting_too_deep_is_refused_not_a_crash(tmp_path):
    text = VALID.replace("input_values: [1, 2, 3]", "input_values: " + "[" * 1000 + "]" * 1000)
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'input_values')}: yaml: nested more than {MAX_DEPTH} levels deep"]


def test_merge_keys_shared_by_many_workers_still_load(tmp_path):
    """A guard, not a fix: the alias limits leave the files people write alone."""
    stages = "".join(
        f"  - <<: *stage\n    name: Stage{i}\n    input_queue: Q{i}\n    output_queues: [Q{i + 1}]\n"
        for i in range(2, 200)
    )
    text = (
        "queues:\n" + "".join(f"  - name: Q{i}\n" for i in range(1, 201)) + "workers:\n"
        "  - name: Source\n    location: fixture_workers\n    class: Source\n    input_values: [1]\n"
        "    output_queues: [Q1]\n"
        "  - &stage\n    name: Stage1\n    location: fixture_workers\n    class: Multiply\n"
        "    params: {factor: 3}\n    input_queue: Q1\n    output_queues: [Q2]\n"
        + stages
        + "  - name: Sink\n    location: fixture_workers\n    class: Collect\n    input_queue: Q200\n"
        "    params: {key: merged}\n"
    )

    spec = load_pipeline(write(tmp_path, text))

    assert len(spec.workers) == 201
    assert {(w.class_name, w.params["factor"]) for w in spec.workers[1:-1]} == {("Multiply", 3)}


# --- values that parse but could not run: sizes past the machine, names that are not text ------------------


@pytest.mark.parametrize(
    "entry, message",
    [
        ("instances: 100000000", "workers[1].instances: must be at most 10,000, got 100,000,000"),
        (
            "instances: 99999999999999999999999999",
            "workers[1].instances: must be at most 10,000, got 99,999,999,999,999,999,999,999,999",
        ),
        ("processes: 5000", "workers[1].processes: must be at most 256, got 5,000"),
    ],
)
def test_a_group_too_large_to_build_is_a_problem_not_all_the_memory(tmp_path, entry, message):
    # --check builds every instance of a thread group: 100,000,000 took 3 GB and 40 s before MemoryError.
    text = VALID.replace("class: Collect\n", f"class: Collect\n    {entry}\n")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, entry)}: {message}"]


def test_instances_in_all_processes_together_are_capped(tmp_path):
    text = VALID.replace("class: Collect\n", "class: Collect\n    processes: 101\n    instances: 100\n")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'instances: 100')}: workers[1].instances: 101 processes x 100 "
        "instances each is 10,100 instances; a group has at most 10,000"
    ]
    assert load_pipeline(write(tmp_path, text.replace("instances: 100", "instances: 99"))).workers[1].instances == 99


@pytest.mark.parametrize(
    "value, kind", [("", "nothing"), ("null", "nothing"), ("Numbers", "a string"), ("|\n  Numbers", "a string")]
)
def test_a_queues_section_that_is_not_a_list_is_a_problem(tmp_path, value, kind):
    # Text passed the schema (one queue name is a list of one, right for output_queues) and nothing was
    # skipped, so the file passed the checks with no queue, and building the run raised KeyError.
    text = VALID.replace("queues:\n  - name: Numbers\n", f"queues: {value}\n")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:1: pipeline.queues: must be a list (write [] for none), got {kind}"]


@pytest.mark.parametrize("value", ["", "Source"])
def test_a_workers_section_that_is_not_a_list_is_a_problem(tmp_path, value):
    text = "queues: []\nworkers: " + value + "\n"
    path = write(tmp_path, text)

    assert [p.split(": ")[1] for p in problems(path)] == ["pipeline.workers"]


@pytest.mark.parametrize("key", ["1", "2001-01-01", "true", "null"])
def test_a_params_name_that_is_not_text_is_a_problem_at_its_line(tmp_path, key):
    text = VALID.replace("      key: check-test\n", f"      key: check-test\n      {key}: 2\n")
    path = write(tmp_path, text)

    found = problems(path)

    assert len(found) == 1 and found[0].startswith(
        f"{path}:{line(text, f'{key}: 2')}: workers[1].params: a parameter's name is text, got "
    )


def test_a_params_name_that_is_not_text_from_set_is_a_problem(tmp_path):
    path = write(tmp_path, VALID)

    with pytest.raises(ConfigError) as caught:
        load_pipeline(path, sets=["workers.Sink.params={1: 2}"])

    assert [(p.key, p.message) for p in caught.value.problems] == [
        (
            "workers[1].params",
            "a parameter's name is text, got an integer 1 (YAML reads an unquoted on/off/yes/no as "
            "a boolean and digits as a number: quote it)",
        )
    ]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+400"])
def test_a_visibility_timeout_that_is_not_finite_is_a_problem(tmp_path, value):
    text = VALID.replace("  - name: Numbers\n", f"  - name: Numbers\n    visibility_timeout_s: {value}\n")
    path = write(tmp_path, text)

    found = problems(path)

    assert len(found) == 1 and found[0].startswith(
        f"{path}:{line(text, 'visibility_timeout_s')}: queues[0].visibility_timeout_s: must be more than 0 (and finite)"
    )


@pytest.mark.parametrize(
    "entry, key", [("  - name: Numbers\n", "queues[0].name"), ("  - name: Sink\n", "workers[1].name")]
)
def test_a_name_that_is_not_text_is_reported_once_not_echoed_as_a_queue_or_group(tmp_path, entry, key):
    # A list as a queue's name made a queue named "['a', 'b']", which no worker wrote to or read.
    text = VALID.replace(entry, entry.replace("name: ", "name: [a, ").replace("\n", "]\n"))
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'name: [a, ')}: {key}: must be a string, got a list"]


def test_a_lone_surrogate_escape_is_a_problem_at_its_line(tmp_path):
    # "\ud800" is no character: --check printed the group's name and died with UnicodeEncodeError.
    text = VALID.replace("name: Sink", 'name: "Sink\\ud800"')
    path = write(tmp_path, text)

    found = problems(path)

    assert len(found) == 1 and found[0].startswith(
        f"{path}:{line(text, 'Sink')}: yaml: invalid YAML: 'Sink\\ud800' "
        "holds '\\ud800', half of a UTF-16 surrogate pair"
    )
