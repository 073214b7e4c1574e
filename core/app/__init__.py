"""The application: the command line, the executor, the run lock, the live status, logging set-up, and what a run
leaves behind (--stats-json, the HTML report, the metrics file, the run history) and --status of a run over Redis.
Imports any layer; nothing imports it."""
