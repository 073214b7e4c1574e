"""The application: the command line, the executor, the run lock, the live status, logging set-up. Imports
any layer; nothing imports it."""
