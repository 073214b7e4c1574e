"""Cyclic garbage collection held off while a process starts, then kept off start-up's objects.

Start-up (imports, the pipeline file, each worker's setup(): aiohttp, lxml, a database driver) makes objects
that live as long as the process, and each collection of the oldest generation walks all of them again: on
the shipped pipeline about 57,000 objects, 11-16 ms a walk, one of which fell in the first round of price
requests, with 256 of them waiting to be sent. So a process that runs a pipeline calls pause() first; once
every instance made in it has run its setup(), or LIMIT_S after pause(), whichever comes first,
resume() moves everything then alive out of the collector's way (gc.freeze(), as forking servers do before
they fork) and collects again: later collections walk only what the run makes. Reference counting frees
memory as always meanwhile; only cyclic garbage waits, for LIMIT_S at most.

Resumed, the youngest generation is collected every YOUNG_THRESHOLD allocations instead of 700: with hundreds
of requests in flight most young objects are still alive, so each young collection walked the same in-flight
objects again (measured at 256 in flight: 239 -> 222 us of CPU per request). Cyclic garbage then waits for at
most that many allocations, a few MB.

A process that did not pause (the test suite, an application embedding the executor) is left as it is.
"""

from __future__ import annotations

import gc
import threading

#: The longest collection is held off, whatever setup() does (or when nothing in the process counts as an
#: instance: a pipeline of course-style workers).
LIMIT_S = 1.0
#: Allocations between two collections of the youngest generation once resumed (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


class StartupCollection:
    """The process's collection around start-up: pause(), then expect() per instance made and set_up() as
    each one's setup() returns; the last set_up() (or the time limit) resumes."""

    def __init__(self, limit_s: float = LIMIT_S) -> None:
        self.limit_s = limit_s
        self._lock = threading.Lock()
        self._paused = False
        self._expected = 0  # instances made that have not finished setup() yet
        self._timer: threading.Timer | None = None

    @property
    def paused(self) -> bool:
        """Whether collection is held off by pause() now."""
        return self._paused

    def pause(self) -> None:
        """Hold off cyclic collection until resume(), limit_s at most. Does nothing when collection is off
        already (the application's choice, which resume() then leaves alone)."""
        with self._lock:
            if gc.isenabled() and not self._paused:
                gc.disable()
                self._paused = True
                self._timer = threading.Timer(self.limit_s, self.resume)
                self._timer.name = "gc-resume"
                self._timer.daemon = True
                self._timer.start()

    def expect(self) -> None:
        """An instance was made: collection waits for its setup() (limit_s after pause() at most)."""
        with self._lock:
            self._expected += 1

    def set_up(self) -> None:
        """An instance's setup() has returned (or raised); the last one resumes collection."""
        with self._lock:
            self._expected -= 1
            last = self._expected <= 0
        if last:
            self.resume()

    def resume(self) -> None:
        """Freeze what is alive now and collect again (the youngest generation less often), if pause() had
        stopped collection."""
        with self._lock:
            timer, self._timer = self._timer, None
            if self._paused:
                self._paused = False
                gc.freeze()
                gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
                gc.enable()
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
            timer.join()


#: The one for this process.
startup_gc = StartupCollection()
