"""${VAR} expansion and --set overrides, through core.pipeline.config.load_pipeline(path, sets=..., env=...).

Each problem is checked as printed (`file:line: key: message`, or `--set ARG: key: message` for a value
that came from the command line), with line numbers computed from the text the test writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_text import line, write

from core.pipeline.config import ConfigError, PipelineSpec, load_pipeline

PIPELINE = """\
queues:
  - name: Numbers
    maxsize: ${QUEUE_SIZE:-7}
workers:
  - name: Source
    location: fixture_workers
    class: Source
    instances: ${SOURCE_INSTANCES}
    input_values:
      - ${BASE_URL}/a
      - ${BASE_URL:-http://unused.invalid}/b
      - $${LITERAL}
    output_queues: [Numbers]
  - name: Sink
    location: fixture_workers
    class: Collect
    instances: ${SINK_INSTANCES:-2}
    input_queue: Numbers
    params:
      key: ${SINK_KEY:-overrides-test}
"""
ENV = {"SOURCE_INSTANCES": "3", "BASE_URL": "http://127.0.0.1:9/x"}

SLOW = """\
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
    class: Slow
    input_queue: Numbers
    params:
      delay_s: 0.01
"""

COLLECT = SLOW.replace("class: Slow", "class: Collect").replace("delay_s: 0.01", "key: k")


def load(tmp_path: Path, text: str, *, env: dict[str, str] | None = None, sets: list[str] = ()) -> PipelineSpec:
    """load_pipeline on the text, with `env` as the whole environment."""
    return load_pipeline(write(tmp_path, text), sets=list(sets), env=env or {})


def problems(tmp_path: Path, text: str, *, env: dict[str, str] | None = None, sets: list[str] = ()) -> list[str]:
    """The problems load_pipeline finds, as printed."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env=env, sets=sets)
    return [str(p) for p in caught.value.problems]


def worker(spec: PipelineSpec, name: str):
    return next(w for w in spec.workers if w.name == name)


# --- ${VAR} and ${VAR:-default} ---------------------------------------------------------------------


def test_variables_and_defaults_are_filled_in(tmp_path):
    spec = load(tmp_path, PIPELINE, env=ENV)

    assert spec.queues["Numbers"].maxsize == 7
    assert worker(spec, "Source").instances == 3
    assert worker(spec, "Source").input_values == ("http://127.0.0.1:9/x/a", "http://127.0.0.1:9/x/b", "${LITERAL}")
    assert worker(spec, "Sink").instances == 2
    assert worker(spec, "Sink").params == {"key": "overrides-test"}


def test_a_value_that_is_one_variable_takes_its_yaml_type(tmp_path):
    spec = load(tmp_path, PIPELINE, env={**ENV, "QUEUE_SIZE": "12", "SINK_INSTANCES": "5"})

    assert spec.queues["Numbers"].maxsize == 12
    assert type(worker(spec, "Source").instances) is int
    assert worker(spec, "Sink").instances == 5


def test_a_set_variable_wins_over_its_default(tmp_path):
    spec = load(tmp_path, PIPELINE, env={**ENV, "SINK_KEY": "from-env"})

    assert worker(spec, "Sink").params == {"key": "from-env"}
    assert worker(spec, "Source").input_values[1] == "http://127.0.0.1:9/x/b"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0.25", 0.25),
        ("3", 3),
        ("true", True),
        ("plain text", "plain text"),
        ("[a, b]", "[a, b]"),  # only scalars are converted; anything else stays the text it was
        ("{a: 1}", "{a: 1}"),
    ],
)
def test_whole_value_conversion(tmp_path, value, expected):
    spec = load(tmp_path, COLLECT.replace("key: k", "key: ${VALUE}"), env={"VALUE": value})

    assert worker(spec, "Sink").params == {"key": expected}
    assert type(worker(spec, "Sink").params["key"]) is type(expected)


def test_text_around_a_variable_keeps_the_value_a_string(tmp_path):
    spec = load(tmp_path, COLLECT.replace("key: k", "key: ${A}${B}"), env={"A": "1", "B": "2"})

    assert worker(spec, "Sink").params == {"key": "12"}


def test_escaped_variable_stays_literal_even_when_set(tmp_path):
    spec = load(tmp_path, COLLECT.replace("key: k", "key: $${HOME} and ${A:-x}"), env={"HOME": "/root"})

    assert worker(spec, "Sink").params == {"key": "${HOME} and x"}


@pytest.mark.parametrize("value", ["bot #1", "#1"])
def test_variable_text_is_never_cut_short(tmp_path, value):
    spec = load(tmp_path, COLLECT.replace("key: k", "key: ${AGENT}"), env={"AGENT": value})

    assert worker(spec, "Sink").params == {"key": value}


def test_env_argument_replaces_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_INSTANCES", "4")
    monkeypatch.setenv("BASE_URL", "http://from-os-environ.invalid")

    assert problems(tmp_path, PIPELINE, env={"BASE_URL": "http://x"}) == [
        f"{tmp_path / 'pipeline.yaml'}:{line(PIPELINE, 'instances: ${SOURCE_INSTANCES}')}: workers[0].instances: "
        "environment variable SOURCE_INSTANCES is not set (write ${SOURCE_INSTANCES:-default} for a default)"
    ]


def test_without_env_argument_the_process_environment_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_INSTANCES", "4")
    monkeypatch.setenv("BASE_URL", "http://from-os-environ.invalid")

    spec = load_pipeline(write(tmp_path, PIPELINE))

    assert worker(spec, "Source").instances == 4
    assert worker(spec, "Source").input_values[0] == "http://from-os-environ.invalid/a"


def test_every_unset_variable_is_reported_with_its_line_and_key(tmp_path):
    path = tmp_path / "pipeline.yaml"

    assert problems(tmp_path, PIPELINE, env={}) == [
        f"{path}:{line(PIPELINE, '${SOURCE_INSTANCES}')}: workers[0].instances: environment variable "
        "SOURCE_INSTANCES is not set (write ${SOURCE_INSTANCES:-default} for a default)",
        f"{path}:{line(PIPELINE, '- ${BASE_URL}/a')}: workers[0].input_values[0]: environment variable "
        "BASE_URL is not set (write ${BASE_URL:-default} for a default)",
    ]


def test_unset_variable_in_a_nested_param(tmp_path):
    text = SLOW.replace("delay_s: 0.01", "delay_s: ${DELAY}")

    assert problems(tmp_path, text) == [
        f"{tmp_path / 'pipeline.yaml'}:{line(text, 'delay_s')}: workers[1].params.delay_s: environment variable "
        "DELAY is not set (write ${DELAY:-default} for a default)"
    ]


def test_expanded_value_is_validated_like_the_file(tmp_path):
    path = tmp_path / "pipeline.yaml"

    assert problems(tmp_path, PIPELINE, env={**ENV, "SOURCE_INSTANCES": "0", "QUEUE_SIZE": "many"}) == [
        f"{path}:{line(PIPELINE, 'maxsize')}: queues[0].maxsize: must be an integer, got a string",
        f"{path}:{line(PIPELINE, '${SOURCE_INSTANCES}')}: workers[0].instances: must be at least 1, got 0",
    ]


def test_expanded_param_is_checked_against_the_class(tmp_path):
    text = SLOW.replace("delay_s: 0.01", "delay_s: ${DELAY}")

    assert problems(tmp_path, text, env={"DELAY": "soon"}) == [
        f"{tmp_path / 'pipeline.yaml'}:{line(text, 'delay_s')}: workers.Sink.params.delay_s: must be float, got 'soon'"
    ]


# --- --set --------------------------------------------------------------------------------------------


def test_set_overrides_instances_params_and_maxsize(tmp_path):
    spec = load(
        tmp_path,
        SLOW,
        sets=["workers.Sink.instances=16", "workers.Sink.params.delay_s=0.5", "queues.Numbers.maxsize=3"],
    )

    assert worker(spec, "Sink").instances == 16
    assert worker(spec, "Sink").params == {"delay_s": 0.5}
    assert spec.queues["Numbers"].maxsize == 3
    assert worker(spec, "Source").instances == 1


def test_set_wins_over_the_environment(tmp_path):
    spec = load(
        tmp_path,
        PIPELINE,
        env={**ENV, "SINK_KEY": "from-env"},
        sets=["workers.Sink.params.key=from-set", "workers.Source.instances=1"],
    )

    assert worker(spec, "Sink").params == {"key": "from-set"}
    assert worker(spec, "Source").instances == 1


def test_later_set_of_the_same_key_wins(tmp_path):
    spec = load(tmp_path, SLOW, sets=["workers.Sink.instances=2", "workers.Sink.instances=5"])

    assert worker(spec, "Sink").instances == 5


def test_set_creates_a_missing_params_mapping(tmp_path):
    spec = load(tmp_path, SLOW, sets=["workers.Source.params.gate=opened"])

    assert worker(spec, "Source").params == {"gate": "opened"}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("http://127.0.0.1:9/chart?range=1d&x=y", "http://127.0.0.1:9/chart?range=1d&x=y"),  # `=` after the first
        ("[unclosed", "[unclosed"),  # not YAML: kept as text
        ("'07'", "07"),  # quoted, so a string
    ],
)
def test_set_value_is_read_as_yaml(tmp_path, value, expected):
    spec = load(tmp_path, COLLECT, sets=[f"workers.Sink.params.key={value}"])

    assert worker(spec, "Sink").params == {"key": expected}


def test_set_list_value(tmp_path):
    spec = load(tmp_path, SLOW, sets=["workers.Source.input_values=[7, 8]"])

    assert worker(spec, "Source").input_values == (7, 8)


@pytest.mark.parametrize(
    "argument", ["instances=3", "workers.Sink", "workers.Sink=3", "pipes.Sink.instances=3", "workers.Sink.instances"]
)
def test_set_with_a_bad_path(tmp_path, argument):
    assert problems(tmp_path, SLOW, sets=[argument]) == [
        f"--set {argument}: --set: expected section.name.key=value, e.g. workers.YahooFinanceWorker.instances=16"
    ]


def test_set_unknown_entry_suggests_the_closest_name(tmp_path):
    assert problems(
        tmp_path, SLOW, sets=["workers.Snk.instances=2", "queues.Numbres.maxsize=2", "workers.Zzz.instances=2"]
    ) == [
        "--set workers.Snk.instances=2: workers.Snk: no such entry in workers; did you mean 'Sink'?",
        "--set queues.Numbres.maxsize=2: queues.Numbres: no such entry in queues; did you mean 'Numbers'?",
        "--set workers.Zzz.instances=2: workers.Zzz: no such entry in workers",
    ]


def test_set_values_are_validated_and_name_the_flag(tmp_path):
    assert problems(
        tmp_path, SLOW, sets=["workers.Sink.instances=0", "queues.Numbers.maxsize=lots", "workers.Sink.instance=2"]
    ) == [
        "--set queues.Numbers.maxsize=lots: queues[0].maxsize: must be an integer, got a string",
        "--set workers.Sink.instance=2: workers[1].instance: unknown key; did you mean 'instances'?",
        "--set workers.Sink.instances=0: workers[1].instances: must be at least 1, got 0",
    ]


def test_set_param_is_checked_against_the_class(tmp_path):
    assert problems(tmp_path, SLOW, sets=["workers.Sink.params.delay=1", "workers.Source.params.gate=5"]) == [
        "--set workers.Source.params.gate=5: workers.Source.params.gate: must be str, got 5",
        "--set workers.Sink.params.delay=1: workers.Sink.params.delay: Slow takes no parameter 'delay'; "
        "did you mean 'delay_s'? (it takes: delay_s)",
    ]


def test_set_queue_wiring_is_checked(tmp_path):
    path = tmp_path / "pipeline.yaml"

    assert problems(tmp_path, SLOW, sets=["workers.Sink.input_queue=Numbrs"]) == [
        "--set workers.Sink.input_queue=Numbrs: workers.Sink.input_queue: unknown queue 'Numbrs'; "
        "did you mean 'Numbers'?",
        f"{path}:{line(SLOW, 'name: Numbers')}: queues.Numbers: no worker reads this queue",
    ]


def test_env_and_set_problems_are_reported_together(tmp_path):
    text = SLOW.replace("delay_s: 0.01", "delay_s: ${DELAY}")

    assert problems(tmp_path, text, sets=["workers.Sinc.instances=2"]) == [
        "--set workers.Sinc.instances=2: workers.Sinc: no such entry in workers; did you mean 'Sink'?",
        f"{tmp_path / 'pipeline.yaml'}:{line(text, 'delay_s')}: workers[1].params.delay_s: environment variable "
        "DELAY is not set (write ${DELAY:-default} for a default)",
    ]


def test_set_on_a_shared_anchor_changes_only_the_named_group(tmp_path):
    text = """\
    queues:
      - name: Numbers
      - name: Slowed
    workers:
      - name: Source
        location: fixture_workers
        class: Source
        input_values: [1]
        output_queues: [Numbers]
      - name: First
        location: fixture_workers
        class: Slow
        input_queue: Numbers
        output_queues: [Slowed]
        params: &common
          delay_s: 0.01
      - name: Second
        location: fixture_workers
        class: Slow
        input_queue: Slowed
        params: *common
    """
    spec = load(tmp_path, text, sets=["workers.First.params.delay_s=0.5"])

    assert worker(spec, "First").params == {"delay_s": 0.5}
    assert worker(spec, "Second").params == {"delay_s": 0.01}
