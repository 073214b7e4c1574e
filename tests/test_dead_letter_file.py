"""The dead-letter file on a full disk: each record is written whole or not at all, so the file stays replayable.

The disk is made full for real: the writing process runs with RLIMIT_FSIZE, so the write that would pass the
limit is cut short and the next one fails with EFBIG (Python ignores SIGXFSZ), as a write to a full disk is cut
short and then fails with ENOSPC.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline_text import source_to_sink

from conftest import ROOT, run_main
from core.pipeline.replay import read_replay

LIMIT_BYTES = 4096
TIMEOUT_S = 60.0
TESTS_DIR = Path(__file__).resolve().parent


def limited() -> None:
    """In the child before exec: files it writes may not grow past LIMIT_BYTES."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


WRITER = textwrap.dedent("""\
    import json, logging, sys
    from pathlib import Path
    from core.run.ledger import DeadLetters
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    letters = DeadLetters(Path(sys.argv[1]), "pipeline")
    written = [letters.write(group="Sink", item={"n": n, "pad": "x" * 50}, error=f"failed {n}") for n in range(60)]
    letters.close()
    print(json.dumps({"written": written, "count": letters.count, "errors": letters.write_errors}))
""")


def test_a_write_cut_short_by_a_full_disk_leaves_no_torn_line(tmp_path):
    path = tmp_path / "dl.jsonl"

    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=limited,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    written = [n for n, ok in enumerate(outcome["written"]) if ok]
    refused = [n for n, ok in enumerate(outcome["written"]) if not ok]
    assert written and refused, outcome  # the limit was reached within the 60 records
    assert outcome["count"] == len(written) and outcome["errors"] == len(refused)
    text = path.read_text()
    assert len(text.encode()) <= LIMIT_BYTES and text.endswith("\n"), text[-200:]
    assert read_replay(path) == {"Sink": [{"n": n, "pad": "x" * 50} for n in written]}
    # Each item the file refused is in the log, whole: its record can be replayed from there.
    logged = [
        json.loads(line.split("this item is recorded only here: ", 1)[1])
        for line in result.stderr.splitlines()
        if "CANNOT WRITE DEAD LETTER" in line
    ]
    assert [record["item"]["n"] for record in logged] == refused


def test_a_run_on_a_full_disk_leaves_a_replayable_dead_letter_file(tmp_path):
    values = list(range(200))  # 100 odd ones fail: about 18,000 bytes of dead letters for 4,096
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(source_to_sink(values, "FailOdd"))
    letters = tmp_path / "dl.jsonl"
    env = {
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(ROOT)]),
        "DATA_DIR": str(tmp_path / "data"),
        "DEAD_LETTER_PATH": str(letters),
    }

    base = {k: v for k, v in os.environ.items() if not k.startswith(("DEAD_LETTER_PATH", "DATA_DIR"))}
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--pipeline", str(pipeline), "--quiet"],
        env={**base, "ENV_FILE": os.devnull, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=limited,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 1, result.stderr
    in_file = [letter["item"] for letter in map(json.loads, letters.read_text().splitlines())]
    logged = [
        json.loads(line.split("this item is recorded only here: ", 1)[1])["item"]
        for line in result.stderr.splitlines()
        if "CANNOT WRITE DEAD LETTER" in line
    ]
    assert in_file and logged
    assert sorted(in_file + logged) == [n for n in values if n % 2]  # every failed item once, in one place
    summary = result.stdout.splitlines()[-1]
    assert f"{len(in_file)} dead letters in {letters}" in summary
    assert f"{len(logged)} DEAD LETTERS COULD NOT BE WRITTEN" in summary
    assert f"{len(logged)} ITEMS UNACCOUNTED FOR" in summary

    # The file replays (exit 1: the odd numbers fail again), where a torn last line made it exit 2.
    again = run_main(
        ["--pipeline", str(pipeline), "--quiet", "--replay", str(letters)],
        env={**env, "DEAD_LETTER_PATH": str(tmp_path / "again.jsonl")},
        timeout_s=TIMEOUT_S,
    )
    assert again.returncode == 1, again.stderr
    assert sorted(
        letter["item"] for letter in map(json.loads, (tmp_path / "again.jsonl").read_text().splitlines())
    ) == sorted(in_file)
