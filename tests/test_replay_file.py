"""`--replay` of a malformed dead-letter file: every bad line is a problem naming the dead-letter file's line, the
run exits 2 with --stats-json written, and nothing is run; a well-formed line reads back as the item it was."""

from __future__ import annotations

import json
import os
from datetime import UTC
from pathlib import Path

import pytest
from pipeline_text import source_to_sink, write

from conftest import ROOT, run_main
from core.app.executor import YamlPipelineExecutor
from core.pipeline.config import ConfigError
from core.pipeline.replay import check_replay, read_replay

PIPELINE = source_to_sink([1, 2, 3], key="replay-file-test")


def letter(item_json: str, group: str = "Sink") -> bytes:
    """A dead-letter line whose item is `item_json`, written as the ledger writes one."""
    return (
        f'{{"time": "2026-01-01T00:00:00.000+00:00", "pipeline": "pipeline", "group": {json.dumps(group)}, '
        f'"kind": "failed", "item": {item_json}, "error": "boom", "attempts": 1}}'
    ).encode()


GOOD = letter('{"$type": "tuple", "value": [1, "a\u2028b"]}')  # U+2028 is no line break in a JSON line
MALFORMED = {
    "deep nesting": letter("[" * 100_000 + "]" * 100_000),
    "deep nesting, not closed": letter("[" * 100_000),
    "decimal that is not a number": letter('{"$type": "decimal", "value": "abc"}'),
    "tuple of a number": letter('{"$type": "tuple", "value": 5}'),
    "dict with a list as key": letter('{"$type": "dict", "value": [[[1, 2], 3]]}'),
    "bytes not base64": letter('{"$type": "bytes", "value": "!!!"}'),
    "date out of range": letter('{"$type": "date", "value": "2001-13-45"}'),
    "unknown tag": letter('{"$type": "pickle", "value": "gASV"}'),
    "binary garbage": bytes(range(256)).replace(b"\n", b""),
    "not JSON": b"{not json",
    "not a record": b"[1, 2, 3]",
    "no group": b'{"item": 1}',
    "group not text": b'{"group": ["Sink"], "item": 1}',
}


def write_letters(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_every_malformed_line_is_a_problem_naming_its_line(tmp_path):
    # A good line first and between, so each bad one's number is its own, not counted from the last problem.
    lines = [GOOD]
    for bad in MALFORMED.values():
        lines += [bad, GOOD]
    path = write_letters(tmp_path / "dl.jsonl", lines)

    with pytest.raises(ConfigError) as caught:
        read_replay(path)

    assert [(p.file, p.line, p.key) for p in caught.value.problems] == [
        (str(path), 2 * n, "--replay") for n in range(1, len(MALFORMED) + 1)
    ]
    assert all(p.message.startswith("malformed dead letter: ") for p in caught.value.problems)


@pytest.mark.parametrize("name", MALFORMED)
def test_one_malformed_line_among_good_ones_is_reported_at_its_line(tmp_path, name):
    path = write_letters(tmp_path / "dl.jsonl", [GOOD, GOOD, MALFORMED[name], GOOD])

    with pytest.raises(ConfigError) as caught:
        read_replay(path)

    assert [(p.line, p.key) for p in caught.value.problems] == [(3, "--replay")]


def test_well_formed_lines_read_back_as_their_items(tmp_path):
    path = write_letters(
        tmp_path / "dl.jsonl", [GOOD, b"", letter('{"$type": "bytes", "value": "AP8="}', "Source"), b"   ", GOOD]
    )

    replay = read_replay(path)

    assert replay == {"Sink": [(1, "a\u2028b"), (1, "a\u2028b")], "Source": [b"\x00\xff"]}
    assert replay.first_line == {"Sink": 1, "Source": 3}


def test_a_group_the_pipeline_lacks_names_the_dead_letter_line(tmp_path):
    pipeline = write(tmp_path, PIPELINE)
    path = write_letters(tmp_path / "dl.jsonl", [GOOD, letter("1", "Gone"), letter("2", "Gone"), letter("3", "Lost")])

    with pytest.raises(ConfigError) as caught:
        YamlPipelineExecutor(pipeline, dead_letter_path=tmp_path / "out.jsonl", replay=read_replay(path))

    assert [(p.file, p.line) for p in caught.value.problems] == [(str(path), 2), (str(path), 4)]
    assert "'Gone'" in caught.value.problems[0].message and str(pipeline) in caught.value.problems[0].message


def test_a_plain_mapping_of_items_is_checked_against_the_pipeline_file(tmp_path):
    spec = YamlPipelineExecutor(write(tmp_path, PIPELINE), dead_letter_path=tmp_path / "out.jsonl").spec

    with pytest.raises(ConfigError) as caught:
        check_replay({"Gone": [1]}, spec)

    assert [(p.file, p.line) for p in caught.value.problems] == [(spec.path, 0)]


def cli_replay(tmp_path: Path, letters: Path):
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
        "DATA_DIR": str(tmp_path / "data"),
        "DEAD_LETTER_PATH": str(tmp_path / "out.jsonl"),
    }
    run = run_main(
        [
            "--pipeline",
            str(write(tmp_path, PIPELINE)),
            "--quiet",
            "--replay",
            str(letters),
            "--stats-json",
            str(tmp_path / "stats.json"),
        ],
        env=env,
    )
    return run, json.loads((tmp_path / "stats.json").read_text())


def test_cli_replay_of_a_malformed_file_exits_2_naming_every_line_with_stats_written(tmp_path):
    lines = [GOOD]
    for bad in MALFORMED.values():
        lines += [bad, GOOD]
    letters = write_letters(tmp_path / "dl.jsonl", lines)

    run, stats = cli_replay(tmp_path, letters)

    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    named = [int(text.split(":")[1]) for text in run.stderr.splitlines() if text.startswith(f"{letters}:")]
    assert named == [2 * n for n in range(1, len(MALFORMED) + 1)]
    assert stats["finish_reason"] == "config-error" and stats["exit_code"] == 2
    assert f"{letters}:2: --replay: malformed dead letter" in stats["error"]
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_replay_naming_an_unknown_group_exits_2_at_the_dead_letter_line(tmp_path):
    letters = write_letters(tmp_path / "dl.jsonl", [GOOD, GOOD, letter("7", "Gone")])

    run, stats = cli_replay(tmp_path, letters)

    assert run.returncode == 2, run.stderr
    assert f"{letters}:3: --replay: the dead letters name group 'Gone'" in run.stderr
    assert stats["finish_reason"] == "config-error"


@pytest.mark.parametrize(
    "name", ["deep nesting", "decimal that is not a number", "tuple of a number", "dict with a list as key"]
)
def test_cli_replay_of_a_line_that_crashed_the_reader_exits_2_at_its_line(tmp_path, name):
    letters = write_letters(tmp_path / "dl.jsonl", [GOOD, MALFORMED[name]])

    run, stats = cli_replay(tmp_path, letters)

    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert f"{letters}:2: --replay: malformed dead letter" in run.stderr
    assert stats["finish_reason"] == "config-error"


def test_an_item_holding_line_separators_of_unicode_replays_as_written(tmp_path):
    # The ledger writes JSON with ensure_ascii=False: U+2028, U+0085 and a form feed stay raw in the line, and
    # str.splitlines() would cut the line at each of them.
    from core.run.ledger import DeadLetters

    item = {"name": "a\u2028b\u0085c\x0cd\x1ce", "n": 1}
    letters = DeadLetters(tmp_path / "dl.jsonl", "pipeline")
    assert letters.write(group="Sink", item=item, error="boom")
    assert letters.write(group="Sink", item=2, error="boom")
    letters.close()

    assert read_replay(tmp_path / "dl.jsonl") == {"Sink": [item, 2]}


def test_random_mutations_of_a_dead_letter_file_are_read_or_refused_line_by_line(tmp_path):
    # Seeded: bytes inserted, cut or swapped in a file the ledger wrote. Each is read, or refused as
    # ConfigError naming lines of the file; nothing else escapes.
    import random
    from datetime import datetime
    from decimal import Decimal

    from core.run.ledger import DeadLetters

    letters = DeadLetters(tmp_path / "written.jsonl", "pipeline")
    for item in [
        1,
        "a\u2028b",
        (1, [2, 3]),
        {"price": Decimal("1.5"), 3: b"\x00"},
        {"t": datetime(2026, 1, 1, tzinfo=UTC), "n": float("inf")},
    ]:
        assert letters.write(group="Sink", item=item, error="boom")
    letters.close()
    written = (tmp_path / "written.jsonl").read_bytes()
    rng = random.Random(21)
    pieces = [
        b"[",
        b"]",
        b"{",
        b"}",
        b'"',
        b",",
        b":",
        b"\\",
        b"\n",
        b"\xff",
        b'{"$type": "tuple", "value": ',
        b'"$type"',
        b"[" * 5000,
    ]
    path = tmp_path / "dl.jsonl"
    refused = 0
    for _ in range(500):
        data = written
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            data = (
                data[:at] + rng.choice(pieces) + data[at:]
                if rng.random() < 0.6
                else data[:at] + data[at + rng.randint(1, 8) :]
            )
        path.write_bytes(data)
        try:
            read_replay(path)
        except ConfigError as exc:
            refused += 1
            assert all(p.file == str(path) and 0 <= p.line <= data.count(b"\n") + 1 for p in exc.problems)
    assert refused > 300
