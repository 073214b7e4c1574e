"""The framework: packages by concern, each importing only those below it (pyproject.toml's import-linter
contracts; docs/ARCHITECTURE.md): app > modes > run > transport | http | storage > pipeline > api > base."""
