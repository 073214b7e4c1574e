"""YamlPipelineExecutor: turns a pipeline file into queues and worker threads, and runs it to its end."""
from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from core.channel import Channel
from core.config import ConfigError, PipelineSpec, Problem, SettingsError, load_pipeline
from core.database import data_dir
from core.errors import StartupError
from core.group import WorkerGroup
from core.ledger import DeadLetters
from core.bottleneck import QueueLoad
from core.report import RunReport, Snapshot, build_report
from workers.base import Worker

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0


class YamlPipelineExecutor(threading.Thread):
    """Loads and validates a pipeline file (raising ConfigError before any thread starts), then as a
    thread: opens each worker group, starts its instances, sends DONE downstream once every producer
    of a queue has ended, and leaves a RunReport in `report` when every worker has ended."""

    def __init__(self, pipeline_location: str | Path, *, sets: list[str] = (),
                 dead_letter_path: str | Path | None = None, monitor_interval_s: float = 1.0,
                 sample_interval_s: float = 0.2) -> None:
        super().__init__(name="YamlPipelineExecutor", daemon=True)
        self.spec: PipelineSpec = load_pipeline(pipeline_location, sets=sets)
        self.monitor_interval_s = monitor_interval_s
        self.sample_interval_s = sample_interval_s
        self.started_at: float | None = None
        self.dead_letters = DeadLetters(Path(dead_letter_path or _default_dead_letter_path(self.spec.name)),
                                        self.spec.name)
        self.stop_event = threading.Event()
        self.stop_signal: int | None = None
        self.report: RunReport | None = None
        self._changed = threading.Event()
        self._ended: set[str] = set()  # queues that got their DONEs or were closed
        self.channels = {q.name: Channel(q.name, q.maxsize) for q in self.spec.queues.values()}
        self.loads = {name: QueueLoad() for name in self.channels}
        self.groups = {w.name: self._make_group(w) for w in self.spec.workers}

    def request_stop(self, signal_number: int | None = None) -> None:
        """Stop taking new work. Sources stop; the other stages finish the item in hand and dead-letter
        what they take after it; sinks store what reaches them. DONE then ends every stage as usual."""
        if not self.stop_event.is_set():
            self.stop_signal = signal_number
            logger.warning("stop requested%s: finishing items in hand, dead-lettering queued ones",
                           f" by signal {signal_number}" if signal_number else "")
        self.stop_event.set()
        self._changed.set()

    def abandon(self) -> int:
        """For a forced exit: write what is in hand, batched or queued to the dead letters, so the file still
        accounts for it (an item in hand may yet have been completed); return how many were written."""
        abandoned = 0
        for group in self.groups.values():
            # Queues are read, not closed: closing would wake the workers to finish what is written here.
            left = [*(item for worker in group.workers for item in worker.in_hand()),
                    *(group.input.pending() if group.input is not None else ())]
            for item in left:
                self.dead_letters.write(group=group.name, item=item, error="abandoned: the run was forced to "
                                        "exit with this item in hand or queued (it may have been completed)")
            abandoned += len(left)
        self.dead_letters.close()
        return abandoned

    def run(self) -> None:
        self.started_at = started = time.monotonic()
        reason, error = "finished", None
        try:
            self._open_groups()
            for group in self.groups.values():
                for worker in group.workers:
                    worker.start()
            self._monitor()
            if self.stop_event.is_set():
                reason = "interrupted"
        except SettingsError as exc:
            reason, error = "config-error", str(exc)
        except StartupError as exc:
            reason, error = "failed", str(exc)
        finally:
            self._finish()
            self.report = self._report(reason, error, time.monotonic() - started)

    def _make_group(self, spec) -> WorkerGroup:
        group = WorkerGroup(
            spec, input=self.channels.get(spec.input_queue), dead_letters=self.dead_letters,
            outputs=[self.channels[name] for name in spec.output_queues], stop=self.stop_event,
            on_exit=self._worker_exited,
        )
        if group.input is not None:
            group.input.on_reject = group.reject
        cls = self.spec.classes[spec.name]
        try:
            group.workers = [cls(group=group, index=i, **spec.params) for i in range(spec.instances)]
        except (TypeError, ValueError) as exc:
            line = spec.key_lines.get("params", spec.line)
            raise ConfigError([Problem(self.spec.path, line, f"workers.{spec.name}.params",
                                       f"{cls.__name__} refused its params: {exc}")]) from None
        return group

    def _open_groups(self) -> None:
        for group in self.groups.values():
            try:
                group.workers[0].open_group()
            except SettingsError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as why the run could not start
                why = str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"
                why = " ".join(why.split())  # the summary stays one line
                logger.error("%s cannot start: %s", group.name, why)
                raise StartupError(f"{group.name} cannot start: {why}") from None

    def _worker_exited(self, worker: Worker) -> None:
        if worker.crash is not None:
            logger.error("%s ended with a crash: %s", worker.name, worker.crash)
        self._changed.set()

    def _monitor(self) -> None:
        """Wake on every worker exit (and at monitor_interval_s regardless); sample queue sizes meanwhile."""
        last_check = time.monotonic()
        while True:
            changed = self._changed.wait(min(self.sample_interval_s, self.monitor_interval_s))
            for name, channel in self.channels.items():
                self.loads[name].add(channel.qsize(), channel.maxsize)
            now = time.monotonic()
            if changed or now - last_check >= self.monitor_interval_s:
                self._changed.clear()
                last_check = now
                self._propagate_ends()
                if all(group.finished() for group in self.groups.values()):
                    return

    def _propagate_ends(self) -> None:
        """DONE into each queue whose producers have all ended; close a queue whose readers all ended."""
        for name, channel in self.channels.items():
            if name in self._ended:
                continue
            reader = self.groups[self.spec.consumer(name).name]
            if reader.finished():
                self._close(name, f"every {reader.name} instance has ended")
            elif all(self.groups[w.name].finished() for w in self.spec.producers(name)):
                channel.put_done(len(reader.workers))
                self._ended.add(name)
                logger.debug("%s: every producer ended; sent %d DONE", name, len(reader.workers))

    def _close(self, name: str, why: str) -> None:
        refused = self.channels[name].close()
        self._ended.add(name)
        if refused:
            logger.warning("%s closed (%s): %d queued items dead-lettered", name, why, refused)

    def _finish(self) -> None:
        for name in self.channels:  # anything still queued is dead-lettered, never dropped
            self._close(name, "the run is over")
        for group in self.groups.values():
            for worker in group.workers:
                if worker.ident is not None:
                    worker.join(JOIN_TIMEOUT_S)
                    if worker.is_alive():
                        logger.error("%s did not end within %.0fs", worker.name, JOIN_TIMEOUT_S)
            group.close()
        self.dead_letters.close()

    def _report(self, reason: str, error: str | None, duration_s: float) -> RunReport:
        return build_report(
            self.spec, self.groups.values(), self.channels.values(), self.loads, reason=reason, error=error,
            duration_s=duration_s, dead_letters=self.dead_letters,
            signal=self.stop_signal if reason == "interrupted" else None)

    def snapshot(self) -> Snapshot:
        """The run as it is now, for the live status (safe to call from another thread)."""
        elapsed = time.monotonic() - self.started_at if self.started_at else 0.0
        groups = [(g.name, sum(1 for w in g.workers if w.is_alive()), len(g.workers), g.counts())
                  for g in self.groups.values()]
        queues = [(c.name, c.qsize(), c.maxsize) for c in self.channels.values()]
        sources = [g for g in self.groups.values() if g.input is None]
        sinks = [g for g in self.groups.values() if not g.outputs]
        total = sum(g.counts().emitted for g in sources) if all(g.finished() for g in sources) else None
        # Items dead-lettered on the way never reach a sink, but they are done with too.
        dropped = sum(g.counts().dead_lettered for g in self.groups.values() if g.input is not None and g.outputs)
        settled = dropped + min((g.counts().processed + g.counts().dead_lettered for g in sinks), default=0)
        return Snapshot(elapsed, groups, queues, total, settled)


def _default_dead_letter_path(pipeline: str) -> Path:
    configured = os.environ.get("DEAD_LETTER_PATH")
    if configured:
        return Path(configured)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return data_dir() / "dead_letters" / f"{pipeline}-{stamp}.jsonl"
