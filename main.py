"""Run the pipeline file named by --pipeline or PIPELINE_LOCATION, and exit with an honest code (core/app/cli.py).
The same as the installed command `yaml-pipeline` (core/app/console.py).

Only the command runs anything here: a worker process imports this file again (multiprocessing loads the
parent's main module in every process it starts) and must not pay for the runner's imports, 60 ms each time.
"""

if __name__ == "__main__":
    from core.app.console import main

    main()
