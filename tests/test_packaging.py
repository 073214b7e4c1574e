"""The project as a package (pyproject.toml): a wheel that holds core/ and workers/, depends on what
requirements.txt lists, and installs the command `yaml-pipeline`, which is `python main.py`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT


def test_the_wheel_has_the_command_the_packages_and_the_requirements(tmp_path):
    source = tmp_path / "source"  # a copy: building writes a build/ folder beside pyproject.toml
    for part in ("core", "workers"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("main.py", "yaml_reader.py", "pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    [wheel] = tmp_path.glob("yaml_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "yaml-pipeline = core.app.console:main" in entry_points
    assert {"main.py", "yaml_reader.py", "core/app/cli.py", "core/run/loop.py", "workers/base.py"} <= set(names)
    required = {
        re.split(r"[<>=; ]", line.split(":", 1)[1].strip())[0].lower()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    }
    listed = {
        re.split(r"[<>= #]", line)[0].lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert required == listed


def test_the_command_is_main_py(tmp_path):
    as_command = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv = ['yaml-pipeline', '--help']; from core.app.console import main; main()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    as_script = subprocess.run(
        [sys.executable, "main.py", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert as_command.returncode == as_script.returncode == 0, as_command.stderr + as_script.stderr
    assert as_command.stdout.replace("yaml-pipeline", "main.py") == as_script.stdout
