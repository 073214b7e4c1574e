"""The worker API (Worker, BatchWorker, ItemError; re-exported by workers.base) and what kind of class a worker
is (async, course-style, buffering). Imports only core.base."""
