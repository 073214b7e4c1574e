"""The fault table itself (tests/reliability.py): a small pytest session in a folder of its own, with one
fault case passing, one failing, one erroring in a fixture and one skipped, writes a table in which every
one of them has a row that says how its test ended, and a header that counts them all."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import ROOT

CASES = """
    import pytest

    ROW = dict(cause="injected", expected="as written", items=3, stored=2, dead_lettered=1, lost=0, not_started=0,
               duplicated=0, seconds=0.5, timing="start to exit", max_s=10, exit_code=1, expected_exit=1)


    @pytest.fixture
    def broken():
        raise RuntimeError("the fixture could not start its server")


    def test_passing(reliability):
        reliability(section="HTTP", case="a case that holds", **ROW)


    def test_failing_after_its_row(reliability):
        reliability(section="Database", case="a case that breaks", **ROW)
        assert 2 + 2 == 5, "the run stored the wrong thing"


    def test_erroring_in_a_fixture(broken, reliability):
        reliability(section="Crash", case="never recorded", **ROW)


    def test_skipped(reliability):
        pytest.skip("no PostgreSQL binaries here")


    def test_not_a_fault_case():
        pass
"""


def test_every_collected_fault_case_has_a_row_that_says_how_it_ended(tmp_path):
    (tmp_path / "test_cases.py").write_text(textwrap.dedent(CASES))
    table = tmp_path / "RELIABILITY.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "reliability",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-q",
            "--reliability-report",
            str(table),
            "test_cases.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1, result.stdout + result.stderr  # the session saw the failures
    text = table.read_text()
    assert "4 cases: 1 passed, 0 known bugs (xfailed), 1 failed, 1 errors, 1 skipped; 4 rows;" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) == 4, rows
    row = {
        name: next(line for line in rows if f"`{name}`" in line or f"::{name}`" in line)
        for name in ("test_passing", "test_failing_after_its_row", "test_erroring_in_a_fixture", "test_skipped")
    }
    assert row["test_passing"].endswith("| passed |")
    assert row["test_failing_after_its_row"].endswith("| failed: AssertionError: the run stored the wrong thing |")
    assert "| 3 | 2 | 1 | 0 | 0 | 0 |" in row["test_failing_after_its_row"]  # the numbers it recorded
    assert row["test_erroring_in_a_fixture"].endswith("| error: RuntimeError: the fixture could not start its server |")
    assert row["test_skipped"].endswith("| skipped: no PostgreSQL binaries here |")
    # The two that recorded nothing are listed apart, by test; no row for a test that is not a fault case.
    unmeasured = text.split("## Cases without a measurement", 1)[1].split("\n## ", 1)[0]
    assert "test_erroring_in_a_fixture" in unmeasured and "test_skipped" in unmeasured
    assert "test_passing" not in unmeasured and "never recorded" not in text
    assert "test_not_a_fault_case" not in text
