"""Run the pipeline file named by --pipeline or PIPELINE_LOCATION, and exit with an honest code (core/app/cli.py).

Only the command runs anything here: a worker process imports this file again (multiprocessing loads the
parent's main module in every process it starts) and must not pay for the runner's imports, 60 ms each time.
"""
import sys

if __name__ == "__main__":
    from core.base.collector import startup_gc
    from core.base.descriptors import reserve

    reserve()  # while this is the only thread: room for many connections (core/base/descriptors.py)
    startup_gc.pause()  # before the imports: start-up's objects are never collected (core/base/collector.py)

    from core.app.cli import main

    sys.exit(main())
