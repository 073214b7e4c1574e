"""Imported by nothing but the runner's preload (fixture_workers.Preloading lists it in Worker.preload):
records the process and thread that imported it, and appends them to the file PRELOADED_LOG names."""

import json
import os
import threading

IMPORTED_IN = {"pid": os.getpid(), "thread": threading.current_thread().name}
if os.environ.get("PRELOADED_LOG"):
    with open(os.environ["PRELOADED_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(IMPORTED_IN) + "\n")
