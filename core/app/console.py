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

    from core.app.cli import main as run

    sys.exit(run())
