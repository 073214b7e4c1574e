"""--report-html: one self-contained page, opened in a real browser (headless Chromium, which .ci/run installs):
every chart drawn, no script error, nothing fetched from outside the file (its Content-Security-Policy would
block and report it), for a finished, a failed, a forced and a split run. Each run is `python main.py`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from main_process import SOURCE_AND_SINK, THREE_OVER_REDIS, main_env

from conftest import ROOT

TIMEOUT_S = 60.0
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> str:
    if BROWSER is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed here (CI installs it)")
    return BROWSER


def main(args: list[str], tmp_path: Path, *, quiet: bool = True) -> subprocess.Popen:
    env = main_env(tmp_path)
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *(["--quiet"] if quiet else []), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )


def finished(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    return process.returncode, out, err


def opened(browser: str, page: Path, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium sees it."""
    profile = tmp_path / f"profile-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def assert_drawn(dom: str, page: Path, *, charts: int = 3) -> None:
    body = re.search(r"<body([^>]*)>", dom)
    assert body and 'data-ready="1"' in body[1], "the page's script did not run to its end"
    assert "data-errors" not in body[1], body[1]  # a script error or a blocked request
    assert f'data-charts="{charts}"' in body[1], body[1]
    assert dom.count('data-drawn="1"') == charts and dom.count("<canvas") >= charts
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the page loads something from outside"
    assert len(text.encode()) < 400_000


PIPELINE = SOURCE_AND_SINK


def test_a_finished_run_s_page(browser, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(values=list(range(30)), sink="FailOdd", params="{}"))
    page = tmp_path / "report.html"

    code, out, err = finished(main(["--pipeline", str(path), "--report-html", str(page)], tmp_path))

    assert code == 1, err  # half the items failed
    dom = opened(browser, page, tmp_path)
    assert_drawn(dom, page)
    assert "finished in" in dom and "odd number" in dom
    assert f"--replay {tmp_path}" in dom  # the command that runs the dead letters again
    assert "<td>15</td>" in dom  # 15 dead letters of one kind, grouped


def test_a_failed_run_s_page(browser, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(values=list(range(5)), sink="FailEvery", params="{}"))
    page = tmp_path / "report.html"

    code, out, err = finished(main(["--pipeline", str(path), "--report-html", str(page)], tmp_path))

    assert code == 1 and "failed" in out, out + err
    dom = opened(browser, page, tmp_path)
    assert_drawn(dom, page)
    assert 'class="verdict bad"' in dom


def test_a_forced_run_s_page(browser, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(values=list(range(5)), sink="Slow", params="{delay_s: 30}"))
    page = tmp_path / "report.html"
    process = main(
        ["--pipeline", str(path), "--report-html", str(page), "--shutdown-timeout", "0.5", "--status-interval", "0.1"],
        tmp_path,
        quiet=False,
    )
    for line in process.stderr:  # a status line: the run is under way, its signal handlers set
        if "core.app.status" in line:
            break
    process.send_signal(signal.SIGINT)

    code, out, err = finished(process)

    assert code == 128 + signal.SIGINT and "forced" in out, out + err
    dom = opened(browser, page, tmp_path)
    assert_drawn(dom, page)
    assert "abandoned" in dom or "not-started" in dom  # what it held, dead-lettered, by kind


def test_a_split_run_s_page_shows_each_process(browser, tmp_path):
    pipeline = tmp_path / "split.yaml"
    pipeline.write_text(THREE_OVER_REDIS.format(maxsize=5, values=[1, 2, 3], sink="BatchCollect", key=tmp_path / "s"))
    run_id = f"html-{uuid.uuid4().hex[:8]}"
    page = tmp_path / "report.html"
    middle = main(["--pipeline", str(pipeline), "--run-id", run_id, "--only", "Middle"], tmp_path)
    ends = main(
        ["--pipeline", str(pipeline), "--run-id", run_id, "--only", "Source,Sink", "--report-html", str(page)], tmp_path
    )

    (code, _, err), (middle_code, _, middle_err) = finished(ends), finished(middle)

    assert (code, middle_code) == (0, 0), err + middle_err
    dom = opened(browser, page, tmp_path)
    assert_drawn(dom, page, charts=4)  # and one of each process's rate over the run
    assert re.search(r'id="chart-processes"[^>]*data-drawn="1"', dom)
    processes = re.search(r'<table id="processes">(.*?)</table>', dom, re.S)[1]
    assert processes.count("<tr>") == 3  # a header and the two processes
    assert "Middle 3 in, 3 out" in processes


def test_with_a_history_the_page_charts_the_last_runs_and_links_the_previous_page(browser, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(values=list(range(6)), sink="FailOdd", params="{}"))
    pages = [tmp_path / "first.html", tmp_path / "second.html", tmp_path / "third.html"]
    for page in pages:
        code, _, err = finished(main(["--pipeline", str(path), "--report-html", str(page)], tmp_path))
        assert code == 1, err

    dom = opened(browser, pages[-1], tmp_path)
    assert_drawn(dom, pages[-1], charts=4)
    assert re.search(r'<a href="second.html">the previous run\'s report</a>', dom), dom[:3000]
    history = re.search(r'<table id="history">(.*?)</table>', dom, re.S)[1]
    assert history.count("<tr>") == 3  # a header and the two runs before this one
