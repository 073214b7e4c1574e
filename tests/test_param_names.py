"""A `params` key that YAML does not read as a name (`on:`, `yes:`, `1:`) is a config problem at its line."""

from __future__ import annotations

from conftest import ROOT, run_main


def test_a_param_yaml_reads_as_a_boolean_is_a_config_error_at_its_line(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "queues:\n  - name: Numbers\nworkers:\n"
        "  - name: Source\n    location: fixture_workers\n    class: Source\n"
        "    input_values: [1, 2]\n    output_queues: [Numbers]\n"
        "  - name: Sink\n    location: fixture_workers\n    class: Collect\n    input_queue: Numbers\n"
        "    params:\n      key: k\n      on: [3]\n      2: x\n"
    )
    result = run_main(["--check", "--pipeline", str(path)], env={"PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"})

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:15: workers[1].params: a parameter's name is text, got a boolean True" in result.stderr
    assert "quote it" in result.stderr
    assert f"{path}:16: workers[1].params: a parameter's name is text, got an integer 2" in result.stderr
