"""core.pipeline.config.load_pipeline: every problem a pipeline file can have, named with its file, line and key."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from pipeline_text import line, write

from conftest import ROOT, SHIPPED_PIPELINE, run_main
from core.pipeline.config import ConfigError, load_pipeline

TESTS_DIR = Path(__file__).resolve().parent

VALID = """\
queues:
  - name: Numbers
    description: numbers from the source
    maxsize: 10
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
      key: config-test
"""


def problems(path: Path) -> list[str]:
    """The problems load_pipeline finds, as printed."""
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
    return [str(p) for p in caught.value.problems]


def test_valid_pipeline_loads_with_classes_resolved(tmp_path):
    import fixture_workers

    spec = load_pipeline(write(tmp_path, VALID))

    assert [w.name for w in spec.workers] == ["Source", "Sink"]
    assert spec.queues["Numbers"].maxsize == 10
    assert spec.workers[0].input_values == (1, 2, 3)
    assert spec.workers[1].params == {"key": "config-test"}
    assert spec.classes == {"Source": fixture_workers.Source, "Sink": fixture_workers.Collect}


def test_shipped_pipeline_loads_cleanly():
    spec = load_pipeline(SHIPPED_PIPELINE)

    assert [w.name for w in spec.workers] == ["WikiWorker", "YahooFinanceWorker", "PostgresWorker"]
    assert set(spec.queues) == {"SymbolQueue", "PostgresUploading"}
    assert set(spec.classes) == {"WikiWorker", "YahooFinanceWorker", "PostgresWorker"}


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"

    assert problems(path) == [f"{path}:0: file: cannot read pipeline file: No such file or directory"]


# --- the YAML itself -------------------------------------------------------------------------------


def test_yaml_syntax_error_names_its_line(tmp_path):
    text = VALID.replace("maxsize: 10", "maxsize: 10: 11")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'maxsize: 10: 11')}: yaml: invalid YAML: mapping values are not allowed here"
    ]


def test_duplicate_key_names_both_lines(tmp_path):
    text = VALID.replace("    maxsize: 10\n", "    maxsize: 10\n    maxsize: 20\n")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'maxsize: 20')}: yaml: invalid YAML: "
        f"found duplicate key 'maxsize' (first on line {line(text, 'maxsize: 10')})"
    ]


def test_merge_key_may_be_overridden(tmp_path):
    text = """\
    queues:
      - name: Numbers
    workers:
      - &source
        name: Source
        location: fixture_workers
        class: Source
        input_values: [1]
        output_queues: [Numbers]
      - <<: *source
        name: Sink
        class: Collect
        input_values: null
        output_queues: []
        input_queue: Numbers
        params: {key: merged}
    """
    spec = load_pipeline(write(tmp_path, text))

    assert [w.name for w in spec.workers] == ["Source", "Sink"]


def test_file_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, "- queues\n- workers\n")

    assert problems(path) == [f"{path}:1: pipeline: must be a mapping, got a list"]


def test_unknown_top_level_key_with_did_you_mean(tmp_path):
    text = VALID.replace("workers:", "worker:")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:1: workers: missing required key",
        f"{path}:{line(text, 'worker:')}: pipeline.worker: unknown key; did you mean 'workers'?",
    ]


def test_top_level_key_of_wrong_type(tmp_path):
    text = "queues: {name: Numbers}\nworkers: []\n"
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:1: pipeline.queues: must be a list, got a mapping",
        f"{path}:2: workers: lists no worker: there is nothing to run",
    ]


def test_unhashable_key_is_a_yaml_problem(tmp_path):
    text = VALID.replace("    maxsize: 10\n", "    maxsize: 10\n    [a, b]: 1\n")
    path = write(tmp_path, text)

    [problem] = problems(path)
    assert problem.startswith(f"{path}:{line(text, '[a, b]: 1')}: yaml: invalid YAML: ")
    assert "unhashable" in problem


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(VALID.encode() + b"# caf\xe9\n")

    [problem] = problems(path)
    assert problem.startswith(f"{path}:")
    assert ": file: cannot read pipeline file: " in problem
    assert "UTF-8" in problem.upper()


# --- keys of a queue or a worker ------------------------------------------------------------------


def test_unknown_worker_key_with_did_you_mean(tmp_path):
    text = VALID.replace("    input_queue: Numbers\n", "    input_queue: Numbers\n    instance: 2\n")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'instance: 2')}: workers[1].instance: unknown key; did you mean 'instances'?"
    ]


def test_unknown_queue_key_with_did_you_mean(tmp_path):
    text = VALID.replace("maxsize: 10", "max_size: 10")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'max_size')}: queues[0].max_size: unknown key; did you mean 'maxsize'?"
    ]


def test_missing_required_worker_key_points_at_the_worker(tmp_path):
    text = VALID.replace("    class: Collect\n", "")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'name: Sink')}: workers[1].class: missing required key"]


def test_missing_queue_name(tmp_path):
    text = VALID.replace("  - name: Numbers\n    description", "  - description")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'description: numbers')}: queues[0].name: missing required key"]


def test_instances_of_wrong_type(tmp_path):
    text = VALID.replace("    input_queue: Numbers\n", '    input_queue: Numbers\n    instances: "two"\n')
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'instances')}: workers[1].instances: must be an integer, got a string"
    ]


def test_instances_boolean_is_not_an_integer(tmp_path):
    text = VALID.replace("    input_queue: Numbers\n", "    input_queue: Numbers\n    instances: yes\n")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'instances')}: workers[1].instances: must be an integer, got a boolean"
    ]


def test_instances_zero(tmp_path):
    text = VALID.replace("    input_queue: Numbers\n", "    input_queue: Numbers\n    instances: 0\n")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'instances: 0')}: workers[1].instances: must be at least 1, got 0"]


@pytest.mark.parametrize(
    "key, value, kind",
    [
        ("input_values", "5", "an integer"),
        ("input_values", "true", "a boolean"),
    ],
)
def test_scalar_where_a_list_is_expected(tmp_path, key, value, kind):
    text = VALID.replace("input_values: [1, 2, 3]", f"{key}: {value}")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, key + ':')}: workers[0].{key}: must be a list or a mapping, got {kind}"
    ]  # a mapping: {range: [...]} or {file: PATH} (tests/test_input_values.py)


def test_output_queues_scalar(tmp_path):
    text = VALID.replace("output_queues: [Numbers]", "output_queues: 5")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'output_queues: 5')}: workers[0].output_queues: must be a list, got an integer"
    ]


def test_input_values_as_a_mapping_of_neither_range_nor_file(tmp_path):
    text = VALID.replace("input_values: [1, 2, 3]", "input_values: {a: 1}")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'input_values')}: workers[0].input_values: as a mapping, input values are "
        "{range: [START, STOP]} (or [START, STOP, STEP]) or {file: PATH}; got the key(s) a"
    ]


def test_maxsize_zero(tmp_path):
    text = VALID.replace("maxsize: 10", "maxsize: 0")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'maxsize: 0')}: queues[0].maxsize: must be at least 1, got 0"]


def test_worker_entry_that_is_not_a_mapping(tmp_path):
    text = VALID + "  - just a name\n"
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'just a name')}: workers[2]: must be a mapping, got a string"]


def test_duplicate_worker_and_queue_names(tmp_path):
    text = VALID + "  - name: Sink\n    location: fixture_workers\n    class: Collect\n    input_queue: Numbers\n"
    text = text.replace("workers:", "  - name: Numbers\nworkers:")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'name: Numbers', 2)}: queues[1].name: duplicate queue name 'Numbers' "
        f"(first on line {line(text, 'name: Numbers')})",
        f"{path}:{line(text, 'name: Sink', 2)}: workers[2].name: duplicate worker name 'Sink'",
    ]


# --- wiring: queues and the groups that write and read them ----------------------------------------


def test_unknown_input_queue_with_did_you_mean(tmp_path):
    text = VALID.replace("input_queue: Numbers", "input_queue: Numbrs")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'name: Numbers')}: queues.Numbers: no worker reads this queue",
        f"{path}:{line(text, 'input_queue: Numbrs')}: workers.Sink.input_queue: unknown queue 'Numbrs'; "
        "did you mean 'Numbers'?",
    ]


def test_unknown_output_queue_with_did_you_mean(tmp_path):
    text = VALID.replace("output_queues: [Numbers]", "output_queues: [Numbers, Numbres]")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'output_queues')}: workers.Source.output_queues: "
        "unknown queue 'Numbres'; did you mean 'Numbers'?"
    ]


def test_queue_with_no_producer(tmp_path):
    text = VALID.replace("    output_queues: [Numbers]\n", "")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'name: Numbers')}: queues.Numbers: no worker writes to this queue"]


def test_queue_with_no_consumer(tmp_path):
    text = VALID.replace("queues:\n", "queues:\n  - name: Unread\n").replace(
        "output_queues: [Numbers]", "output_queues: [Numbers, Unread]"
    )
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'name: Unread')}: queues.Unread: no worker reads this queue"]


def test_queue_read_by_two_groups(tmp_path):
    text = VALID + (
        "  - name: OtherSink\n    location: fixture_workers\n    class: Collect\n"
        "    input_queue: Numbers\n    params: {key: other}\n"
    )
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'name: Numbers')}: queues.Numbers: read by 2 worker groups (Sink, OtherSink); they "
        "would split its items between them. Give each group its own queue and list both in output_queues"
    ]


def test_cycle(tmp_path):
    text = """\
    queues:
      - name: Numbers
      - name: Twice
    workers:
      - name: Source
        location: fixture_workers
        class: Source
        input_values: [1]
        output_queues: [Numbers]
      - name: Double
        location: fixture_workers
        class: Multiply
        input_queue: Numbers
        output_queues: [Twice]
      - name: Back
        location: fixture_workers
        class: Multiply
        input_queue: Twice
        output_queues: [Numbers]
    """
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'name: Double')}: workers.Double: queues form a cycle: Double -> Back -> Double"
    ]


def test_worker_reading_its_own_output_is_a_cycle(tmp_path):
    text = VALID.replace("    input_queue: Numbers\n", "    input_queue: Numbers\n    output_queues: [Numbers]\n")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'name: Sink')}: workers.Sink: queues form a cycle: Sink -> Sink"]


def test_worker_with_both_input_queue_and_input_values(tmp_path):
    text = VALID.replace("    input_queue: Numbers\n", "    input_queue: Numbers\n    input_values: [4]\n")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'name: Sink')}: workers[1]: needs exactly one of input_queue "
        "(to read a queue) or input_values (to be a source)"
    ]


def test_worker_with_neither_input_queue_nor_input_values(tmp_path):
    text = VALID.replace("    input_values: [1, 2, 3]\n", "")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'name: Source')}: workers[0]: needs exactly one of input_queue "
        "(to read a queue) or input_values (to be a source)"
    ]


# --- the worker class and its params ----------------------------------------------------------------


def test_module_that_cannot_be_imported_suggests_a_sibling(tmp_path):
    text = VALID.replace(
        "location: fixture_workers\n    class: Collect", "location: workers.wiki_workr\n    class: Collect"
    )
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'wiki_workr')}: workers.Sink.location: cannot import module "
        "'workers.wiki_workr': No module named 'workers.wiki_workr'; "
        f"looked in {ROOT / 'workers'}; did you mean 'workers.wiki_worker'?"
    ]


def test_class_missing_with_did_you_mean(tmp_path):
    text = VALID.replace("class: Collect", "class: Colect")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'class: Colect')}: workers.Sink.class: module 'fixture_workers' "
        "has no class 'Colect'; did you mean 'Collect'?"
    ]


@pytest.mark.parametrize(
    "location, class_name",
    [("fixture_workers", "NotAWorker"), ("json", "JSONDecoder"), ("fixture_workers", "GATE_TIMEOUT_S")],
)
def test_class_that_is_not_a_worker(tmp_path, location, class_name):
    text = VALID.replace(
        "location: fixture_workers\n    class: Collect", f"location: {location}\n    class: {class_name}"
    )
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'class: ' + class_name)}: workers.Sink.class: "
        f"{class_name} is not a subclass of workers.base.Worker"
    ]


def test_preload_that_names_no_modules_is_reported(tmp_path):
    text = VALID.replace("class: Collect", "class: PreloadsNothing")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'class: PreloadsNothing')}: workers.Sink.class: "
        "PreloadsNothing.preload must name modules to import (a tuple of str), not 42"
    ]


def test_unknown_param_with_did_you_mean(tmp_path):
    text = VALID.replace("key: config-test", "kee: config-test")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'params:')}: workers.Sink.params.key: Collect needs parameter 'key'",
        f"{path}:{line(text, 'kee:')}: workers.Sink.params.kee: Collect takes no parameter 'kee'; "
        "did you mean 'key'? (it takes: key)",
    ]


def test_missing_required_param_without_params_key(tmp_path):
    text = VALID.replace("    params:\n      key: config-test\n", "")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'name: Sink')}: workers.Sink.params.key: Collect needs parameter 'key'"
    ]


def test_param_of_wrong_type(tmp_path):
    text = VALID.replace("class: Source", "class: Source\n    params:\n      gate: 3")
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, 'gate: 3')}: workers.Source.params.gate: must be str, got 3"]


def test_int_param_refuses_a_string_and_a_boolean(tmp_path):
    text = VALID.replace(
        "class: Collect\n    input_queue: Numbers\n    params:\n      key: config-test",
        'class: Multiply\n    input_queue: Numbers\n    params:\n      factor: "3"',
    )
    path = write(tmp_path, text)
    assert problems(path) == [f"{path}:{line(text, 'factor')}: workers.Sink.params.factor: must be int, got '3'"]

    path = write(tmp_path, text.replace('"3"', "true"))
    assert problems(path) == [f"{path}:{line(text, 'factor')}: workers.Sink.params.factor: must be int, got True"]


def test_batch_worker_params_are_checked_through_the_base_class(tmp_path):
    text = VALID.replace("class: Collect", "class: BatchCollect").replace(
        "key: config-test", "key: config-test\n      batch_sise: 5"
    )
    path = write(tmp_path, text)

    [problem] = problems(path)
    assert problem.startswith(
        f"{path}:{line(text, 'batch_sise')}: workers.Sink.params.batch_sise: BatchCollect takes "
        "no parameter 'batch_sise'; did you mean 'batch_size'? (it takes: batch_size, "
    )
    taken = problem.split("(it takes: ")[1].rstrip(")").split(", ")
    assert {"batch_size", "flush_interval_s", "key"} <= set(taken)


def test_params_the_class_refuses_are_a_config_error_before_any_thread(tmp_path):
    from core.app.executor import YamlPipelineExecutor

    text = VALID.replace("class: Collect", "class: BatchCollect").replace(
        "key: config-test", "key: config-test\n      batch_size: 0"
    )
    path = write(tmp_path, text)
    before = threading.active_count()

    with pytest.raises(ConfigError) as caught:
        YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl")

    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith(
        f"{path}:{line(text, 'params:')}: workers.Sink.params: BatchCollect refused its params: batch_size must be >= 1"
    )
    assert threading.active_count() == before
    assert not (tmp_path / "dl.jsonl").exists()


# --- several at once ------------------------------------------------------------------------------


def test_several_problems_are_reported_together(tmp_path):
    text = (
        VALID.replace("maxsize: 10", "maxsize: ten")
        .replace("class: Source\n", "class: Source\n    instances: 0\n")
        .replace("    input_queue: Numbers\n", "    input_queue: Numbers\n    colour: blue\n")
    )
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'maxsize: ten')}: queues[0].maxsize: must be an integer, got a string",
        f"{path}:{line(text, 'instances: 0')}: workers[0].instances: must be at least 1, got 0",
        f"{path}:{line(text, 'colour')}: workers[1].colour: unknown key",
    ]


def test_several_wiring_problems_are_reported_together(tmp_path):
    text = VALID.replace("input_queue: Numbers", "input_queue: Nowhere").replace(
        "queues:\n", "queues:\n  - name: Orphan\n"
    )
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'name: Orphan')}: queues.Orphan: no worker writes to this queue",
        f"{path}:{line(text, 'name: Orphan')}: queues.Orphan: no worker reads this queue",
        f"{path}:{line(text, 'name: Numbers')}: queues.Numbers: no worker reads this queue",
        f"{path}:{line(text, 'input_queue: Nowhere')}: workers.Sink.input_queue: unknown queue 'Nowhere'",
    ]


def test_several_import_problems_are_reported_together(tmp_path):
    text = VALID.replace("class: Source", "class: Sauce").replace("key: config-test", "kee: config-test")
    path = write(tmp_path, text)

    assert problems(path) == [
        f"{path}:{line(text, 'class: Sauce')}: workers.Source.class: module 'fixture_workers' has no class "
        "'Sauce'; did you mean 'Source'?",
        f"{path}:{line(text, 'params:')}: workers.Sink.params.key: Collect needs parameter 'key'",
        f"{path}:{line(text, 'kee:')}: workers.Sink.params.kee: Collect takes no parameter 'kee'; "
        "did you mean 'key'? (it takes: key)",
    ]


# --- through the command line ----------------------------------------------------------------------


def test_main_exits_2_and_prints_each_problem_with_its_line(tmp_path):
    text = VALID.replace("input_queue: Numbers", "input_queue: Numbrs").replace(
        "class: Source\n", "class: Source\n    instances: 0\n"
    )
    path = write(tmp_path, text)

    result = run_main(["--pipeline", str(path)], env={"PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(ROOT)])})

    assert result.returncode == 2
    printed = [entry for entry in result.stderr.splitlines() if entry.startswith(f"{path}:")]
    assert printed == [
        f"{path}:{line(text, 'name: Numbers')}: queues.Numbers: no worker reads this queue",
        f"{path}:{line(text, 'instances: 0')}: workers[0].instances: must be at least 1, got 0",
        f"{path}:{line(text, 'input_queue: Numbrs')}: workers.Sink.input_queue: unknown queue 'Numbrs'; "
        "did you mean 'Numbers'?",
    ]
    assert "3 problem(s) in the pipeline file; nothing was run" in result.stderr
    assert result.stdout.startswith(f"{path.stem}: config-error ({path}:") and result.stdout.endswith("; exit 2\n")


def test_main_reports_import_problems_of_fixture_workers(tmp_path):
    text = VALID.replace("key: config-test", "kee: config-test")
    path = write(tmp_path, text)

    result = run_main(["--pipeline", str(path)], env={"PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(ROOT)])})

    assert result.returncode == 2
    printed = [entry for entry in result.stderr.splitlines() if entry.startswith(f"{path}:")]
    assert printed == [
        f"{path}:{line(text, 'params:')}: workers.Sink.params.key: Collect needs parameter 'key'",
        f"{path}:{line(text, 'kee:')}: workers.Sink.params.kee: Collect takes no parameter 'kee'; "
        "did you mean 'key'? (it takes: key)",
    ]


def test_main_exits_2_for_a_scalar_where_a_list_is_expected(tmp_path):
    text = VALID.replace("input_values: [1, 2, 3]", "input_values: 5")
    path = write(tmp_path, text)

    result = run_main(["--pipeline", str(path)], env={"PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(ROOT)])})

    assert result.returncode == 2
    assert (
        f"{path}:{line(text, 'input_values')}: workers[0].input_values: must be a list or a mapping, got an integer"
        in result.stderr.splitlines()
    )


def test_main_without_any_pipeline_exits_2(tmp_path):
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")

    result = run_main([], env={"ENV_FILE": str(empty_env_file)})

    assert result.returncode == 2
    assert "no pipeline: set PIPELINE_LOCATION (environment or .env.local) or pass --pipeline" in result.stderr
    assert (
        result.stdout == "?: config-error (no pipeline: set PIPELINE_LOCATION (environment or .env.local) or "
        "pass --pipeline); nothing was run; exit 2\n"
    )


def test_main_with_a_missing_pipeline_file_exits_2(tmp_path):
    path = tmp_path / "missing.yaml"

    result = run_main(["--pipeline", str(path)])

    assert result.returncode == 2
    assert f"{path}:0: file: cannot read pipeline file: No such file or directory" in result.stderr.splitlines()


# --- long lists: the loader's memory per value, and lines inside a long list -------------------------------


def long_source(count: int, replace: dict[int, str]) -> str:
    """A pipeline whose source lists `count` integers, one a line; `replace` puts other text at some indexes."""
    values = "".join(f"      - {replace.get(index, index)}\n" for index in range(count))
    return VALID.replace("    input_values: [1, 2, 3]\n", "    input_values:\n" + values)


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            "${LONG_LIST_NEVER_SET}",
            "workers[0].input_values[150000]: environment variable LONG_LIST_NEVER_SET is not set "
            "(write ${LONG_LIST_NEVER_SET:-default} for a default)",
        ),
        ("!!int abc", "yaml: invalid YAML: 'abc' is not a valid int (invalid literal for int() with base 10: 'abc')"),
    ],
)
def test_a_bad_value_deep_in_a_long_list_names_its_own_line(tmp_path, bad, message):
    # The loader keeps one line number per item (4 bytes), not PyYAML's nodes: messages still need them.
    text = long_source(160_000, {150_000: bad})
    path = write(tmp_path, text)

    assert problems(path) == [f"{path}:{line(text, bad)}: {message}"]
    assert line(text, bad) > 150_000


def test_the_loader_keeps_a_long_list_in_little_more_than_its_values():
    # 10,000 integers (28 bytes each): PyYAML's node tree held a ScalarNode and two Marks per value, ~880 bytes
    # a value at the peak (180 MiB for 200,000); now the values, the list and a line number apiece.
    import tracemalloc

    from core.pipeline.yaml_lines import load_with_lines

    count = 10_000
    text = "values:\n" + "".join(f"  - {1_000_000 + index}\n" for index in range(count))
    tracemalloc.start()
    try:
        loaded = load_with_lines(text)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert loaded["values"][-1] == 1_000_000 + count - 1 and loaded["values"].line_of(count - 1) == count + 1
    assert (peak_bytes - len(text) * 2) / count < 100  # the text itself (and PyYAML's copy of it) aside
