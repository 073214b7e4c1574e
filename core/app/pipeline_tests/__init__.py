"""`python main.py --test`: a pipeline's tests, written as data beside it (PIPELINE.tests.yaml), each run as a
fresh run of its own (cases: the file and its checks; derive: the pipeline a test runs; capture: the workers
that feed a stage and keep what it sends; expect: comparing; runner: running and reporting; fix: --fix-tests)."""
