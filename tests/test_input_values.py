"""A source's input values from a range or a file (core/pipeline/values.py): the values themselves to every later
check, each problem with the file, key and line; a source of 2,000 numbers in one line, run to its end."""

from __future__ import annotations

import fixture_workers
import pytest
from main_process import SOURCE_AND_SINK

from core.app.executor import YamlPipelineExecutor
from core.pipeline.config import ConfigError, load_pipeline


def spec_values(tmp_path, values: str, *, files: dict[str, str] | None = None):
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "p.yaml"
    path.write_text(SOURCE_AND_SINK.format(values=values, sink="Collect", params="{key: k}"))
    return path, load_pipeline(path)


def problems(tmp_path, values: str, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        spec_values(tmp_path, values, **kwargs)
    return [str(problem) for problem in caught.value.problems]


def test_a_range_and_a_file_give_the_values(tmp_path):
    _, spec = spec_values(tmp_path, "{range: [1, 2001]}")
    assert spec.workers[0].input_values == tuple(range(1, 2001))
    _, spec = spec_values(tmp_path, "{range: [10, 0, -5]}")
    assert spec.workers[0].input_values == (10, 5)
    _, spec = spec_values(tmp_path, "{file: symbols.txt}", files={"symbols.txt": "AAPL\n\n  BRK.B \nMSFT\n"})
    assert spec.workers[0].input_values == ("AAPL", "BRK.B", "MSFT")
    _, spec = spec_values(tmp_path, "{file: items.jsonl}", files={"items.jsonl": '1\n{"a": [2]}\n"three"\n'})
    assert spec.workers[0].input_values == (1, {"a": [2]}, "three")


def test_each_problem_names_the_file_the_key_and_the_line(tmp_path):
    path = tmp_path / "p.yaml"
    assert problems(tmp_path, "{range: [1]}") == [
        f"{path}:4: workers[0].input_values.range: must be [START, STOP] or [START, STOP, STEP] of integers, got [1]"
    ]
    assert problems(tmp_path, "{range: [1, 5, 0]}") == [f"{path}:4: workers[0].input_values.range: STEP must not be 0"]
    assert (
        "gives 1,000,000,000 values; a source takes at most 10,000,000"
        in problems(tmp_path, "{range: [0, 1000000000]}")[0]
    )
    assert problems(tmp_path, "{file: missing.txt}") == [
        f"{path}:4: workers[0].input_values.file: cannot read {tmp_path / 'missing.txt'}: No such file or directory"
    ]
    assert problems(tmp_path, "{file: bad.jsonl}", files={"bad.jsonl": "1\n{oops\n"}) == [
        f"{path}:4: workers[0].input_values.file: {tmp_path / 'bad.jsonl'}:2: not a JSON value "
        "(Expecting property name enclosed in double quotes)"
    ]
    assert "input values are {range: [START, STOP]}" in problems(tmp_path, "{count: 5}")[0]


def test_a_source_of_2000_numbers_in_one_line_runs_to_its_end(tmp_path):
    path = tmp_path / "p.yaml"
    key = f"values-{tmp_path.name}"
    path.write_text(SOURCE_AND_SINK.format(values="{range: [0, 2000]}", sink="Collect", params=f"{{key: {key}}}"))
    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl")
    executor.start()
    executor.join(60)
    try:
        assert not executor.is_alive() and executor.report.exit_code == 0
        assert sorted(fixture_workers.collected(key)) == list(range(2000))
    finally:
        fixture_workers.forget(key)
