"""The command `yaml-pipeline` (pyproject.toml's console script) and `python main.py`: one entry point.

Before anything heavy is imported: room in the descriptor table for many connections, and the collector paused
so that start-up's objects are never collected (core/base/descriptors.py, core/base/collector.py). Importing this
module costs nothing: a worker process imports the parent's main module again, and must not pay for the runner.
"""

import sys


def main() -> None:
    """Run the command line (core/app/cli.py) and exit with its code."""
    from core.base.collector import startup_gc
    from core.base.descriptors import reserve

    reserve()  # while this is the only thread
    startup_gc.pause()  # before the imports

    try:
        from core.app.cli import main as run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("core", "workers"):
            raise
        sys.exit(_not_installed(exc.name or "?"))
    sys.exit(run())


def _not_installed(module: str) -> int:
    """This Python lacks the requirements (`python3 main.py` outside the venv): say which to use, exit 2."""
    print(
        f"main.py: cannot import {module!r} with {sys.executable}: the requirements are not installed for this "
        "Python. Run it with the project's venv: .venv/bin/python main.py (make one: python3 -m venv .venv && "
        ".venv/bin/pip install -r requirements.txt)",
        file=sys.stderr,
    )
    return 2
