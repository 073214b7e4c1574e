"""The pipeline file: loading it with line numbers, its specs, checks, overrides (--set, ${VAR}), wiring,
resolving worker classes, replay files, the graph. Imports core.api and core.base."""
