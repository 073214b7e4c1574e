"""YamlPipelineExecutor: turns a pipeline file into queues and worker groups, and runs it to its end."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.api.worker import holds
from core.app.assembly import Assembly
from core.base.errors import StartupError
from core.base.paths import default_dead_letter_path
from core.pipeline.config import PipelineSpec, SettingsError, load_pipeline
from core.pipeline.imports import preload, preload_modules
from core.pipeline.replay import check_replay
from core.run.ends import Ends
from core.run.ledger import DeadLetters
from core.run.loop import Instance
from core.run.report import RunReport, Snapshot
from core.run.tally import build_report, snapshot_of
from core.run.watch import Watch
from core.transport.base import is_shared

if TYPE_CHECKING:
    from core.run.distributed import Distributed  # imported where a run has Redis queues: it loads redis

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0
ABANDONED = "abandoned: the run was forced to exit with this item in hand or queued (it may have been completed)"


class YamlPipelineExecutor(threading.Thread):
    """Loads and validates a pipeline file (raising ConfigError before any thread starts), then as a
    thread: opens each worker group, starts its instances, sends DONE downstream once every producer
    of a queue has ended, and leaves a RunReport in `report` when every instance has ended.

    `replay` ({group: [items]}) runs those items instead of the sources' input values: each goes into
    the input of its group (a source's values back to that source), and the pipeline runs on from there.
    With queues of `backend: redis` the run can span processes and machines: `run_id` names the run they
    share (RUN_ID, or a new one) and `only` the groups this process runs (core/run/distributed.py).
    """

    def __init__(
        self,
        pipeline_location: str | Path,
        *,
        sets: Sequence[str] = (),
        dead_letter_path: str | Path | None = None,
        monitor_interval_s: float = 1.0,
        sample_interval_s: float = 0.2,
        replay: dict[str, list[Any]] | None = None,
        run_id: str | None = None,
        only: list[str] | None = None,
        report: bool = False,
    ) -> None:
        super().__init__(name="YamlPipelineExecutor", daemon=True)
        self.spec: PipelineSpec = load_pipeline(pipeline_location, sets=sets)
        if replay is not None:
            check_replay(replay, self.spec)
        self.distributed: Distributed | None = None
        if any(q.backend == "redis" for q in self.spec.queues.values()) or run_id or only:
            from core.run.distributed import Distributed

            self.distributed = Distributed(self.spec, run_id=run_id, only=only)
        self.monitor_interval_s = monitor_interval_s
        self.started_at: float | None = None
        self.dead_letters = DeadLetters(
            Path(dead_letter_path or default_dead_letter_path(self.spec.name)), self.spec.name
        )
        self.stop_event = threading.Event()
        self._stop_lock = threading.Lock()  # one stop request acts; any other (a signal, Redis lost) returns
        self.stop_signal: int | None = None
        self.report: RunReport | None = None
        self._changed = threading.Event()
        self._early_imports: threading.Thread | None = None  # imports the workers' `preload` (core/pipeline/imports.py)
        self.run_report: dict | None = None
        assembly = Assembly(
            self.spec,
            self.distributed,
            dead_letters=self.dead_letters,
            stop=self.stop_event,
            on_exit=self._instance_exited,
        )
        self.queues = {q.name: assembly.queue(q) for q in self.spec.queues.values()}
        runs_here = self.distributed.groups if self.distributed else [w.name for w in self.spec.workers]
        self.groups = {w.name: assembly.group(w, self.queues, replay) for w in self.spec.workers if w.name in runs_here}
        self._preloads = assembly.preloads  # replayed items, put in once the run is open
        self.watch = Watch(self.groups, self.queues, sample_interval_s=sample_interval_s)
        self.ends = Ends(self.spec, self.distributed)
        # The process that runs a sink (or was asked) prints the whole run's report.
        self.reports_run = self.distributed is not None and (report or any(not g.outputs for g in self.groups.values()))

    # --- control, from another thread --------------------------------------------------------------

    def request_stop(self, signal_number: int | None = None) -> None:
        """Stop taking new work: the sources' values not yet taken and every queue not read by a sink are
        closed (what they hold is dead-lettered), the items in hand finish, sinks store what reaches them,
        and DONE then ends every stage as usual. Safe to call from any thread, any number of times."""
        with self._stop_lock:
            if self.stop_event.is_set():
                return
            self.stop_signal = signal_number
            self.stop_event.set()
        logger.warning(
            "stop requested%s: finishing items in hand, dead-lettering what is queued",
            f" by signal {signal_number}" if signal_number else "",
        )
        for group in self.groups.values():
            shared = getattr(group.input, "keeps_unsettled", False)  # a Redis queue: others read it on
            group.runner.stop(close_input=bool(group.outputs) or shared)
            if group.outputs or shared:  # not a sink (or this process leaves a shared queue): input closed
                group.input.close()
                if group.spec.input_queue:
                    self.ends.ended.add(group.spec.input_queue)
        self._changed.set()

    def abandon(self, why: str = ABANDONED) -> int:
        """For a forced exit: freeze every queue, then write what is in hand or queued to the dead letters,
        so the file still accounts for it; return how many were written."""
        frozen = {id(group.input): group.input.freeze() for group in self.groups.values()}
        abandoned = 0
        for group in self.groups.values():
            queued = frozen.pop(id(group.input), [])
            held = group.give_up()  # from here on its instances record nothing: each item is recorded once
            if getattr(group.input, "keeps_unsettled", False):  # pending in Redis: claimed by a live process
                group.returned(len(held))
                continue
            abandoned += group.abandon(
                queued, why, kind="not-started" if group.is_source else "abandoned", received=True
            )
            abandoned += group.abandon([d.item for d in group.runner.in_hand()], why, received=True)
            abandoned += group.abandon([d.item for d in held], why)
        self.dead_letters.close()
        return abandoned

    def forced_report(self, why: str, signal_number: int | None) -> RunReport:
        """The report of a run forced to exit now (after abandon())."""
        started = self.started_at or time.monotonic()
        return self._report("forced", why, time.monotonic() - started, signal_number)

    # --- the run -----------------------------------------------------------------------------------

    def run(self) -> None:
        self.started_at = started = time.monotonic()
        self.watch.start(started)
        reason, error = "finished", None
        # The modules the workers of this process will import, imported while the groups open (worker processes
        # have theirs imported in the fork server: core/modes/processes.py). Last group first: a source's thread
        # imports its own modules as soon as it starts, so the two import different modules side by side
        # instead of one waiting for the other's (at 256 requests in flight: 22 ms less than without, 11 ms
        # less than in file order).
        self._early_imports = preload(
            list(
                dict.fromkeys(
                    name
                    for group in reversed(self.groups.values())
                    if not group.spec.processes
                    for name in preload_modules(self.spec.classes[group.name])
                )
            )
        )
        try:
            self._open_groups()
            for queue, items in self._preloads:
                queue.preload(items)
            for group in self.groups.values():
                if is_shared(group.input):
                    # a batching (or flushing) sink must be able to fill its batches
                    batch = max(
                        holds(i.worker) if hasattr(i, "worker") else getattr(group.runner, "batch_size", 1)
                        for i in group.instances
                    )
                    group.input.fetcher.start(group.runner.readers, prefetch=max(group.runner.size * (batch + 1), 16))
                group.runner.start()
            self._monitor()
            if self.stop_event.is_set():
                reason = "interrupted"
        except SettingsError as exc:
            reason, error = "config-error", str(exc)
        except StartupError as exc:
            reason, error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. Redis lost: the run ends, saying why
            logger.exception("the run failed")
            reason, error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            if self.distributed is not None and self.distributed.run.lost is not None:
                reason, error = "failed", str(self.distributed.run.lost)
            try:
                self._finish()
            except Exception as exc:  # noqa: BLE001 - the run still gets its report, with this as its error
                logger.exception("finishing the run failed")
                if error is None:
                    reason, error = "failed", f"finishing the run failed: {type(exc).__name__}: {exc}"  # made one line
            self.report = self._report(
                reason, error, time.monotonic() - started, self.stop_signal if reason == "interrupted" else None
            )

    def _open_groups(self) -> None:
        if self.distributed is not None:
            self.distributed.run.on_lost = lambda error: self.request_stop()
            self.distributed.open([g.name for g in self.groups.values() if not is_shared(g.input)])
        for group in self.groups.values():
            try:
                group.runner.open_group()
            except SettingsError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as why the run could not start
                why = str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"
                why = " ".join(why.split())  # the summary stays one line
                logger.error("%s cannot start: %s", group.name, why)
                raise StartupError(f"{group.name} cannot start: {why}") from None

    def _instance_exited(self, instance: Instance) -> None:
        if instance.crash is not None:
            logger.error("%s ended with a crash: %s: %s", instance.name, type(instance.crash).__name__, instance.crash)
        self._changed.set()

    def _monitor(self) -> None:
        """Wake on every instance exit (and at monitor_interval_s regardless); sample queue sizes on the clock,
        every sample_interval_s, never on a wake (core/run/watch.py)."""
        last_check = time.monotonic()
        while True:
            changed = self._changed.wait(min(self.watch.sample_interval_s, self.monitor_interval_s))
            now = time.monotonic()
            self.watch.tick(now)
            if changed or now - last_check >= self.monitor_interval_s:
                self._changed.clear()
                last_check = now
                self._propagate_ends()
                if self.distributed is not None:
                    self._publish(self.distributed, finished=False)
                if all(group.finished() for group in self.groups.values()):
                    return

    def _propagate_ends(self) -> None:
        self.ends.propagate(self.groups, self.queues)

    def _finish(self) -> None:
        if self._early_imports is not None:
            self._early_imports.join(JOIN_TIMEOUT_S)  # an import cannot be stopped; a daemon thread at worst
        for group in self.groups.values():  # anything still queued is dead-lettered, never dropped
            group.input.close()
        for group in self.groups.values():
            if not group.runner.join(JOIN_TIMEOUT_S):
                logger.error("%s did not end within %.0fs", group.name, JOIN_TIMEOUT_S)
            group.close()
        if self.distributed is not None:
            # The final counts first: the groups' ends let the sink's process finish, and its run report reads them.
            self._publish(self.distributed, finished=True)
            for group in self.groups.values():
                if group.finished():
                    self.distributed.group_finished(group.name)
            try:
                if self.reports_run and self.distributed.run.lost is None:
                    self.run_report = self.distributed.run_report()
                    if not self.stop_event.is_set() and not self.run_report["unfinished"]:
                        logger.info(
                            "run %s has ended: its %d keys expire in a day",
                            self.distributed.run_id,
                            self.distributed.run.expire_all(),
                        )
            except Exception as exc:  # noqa: BLE001 - Redis lost: the local report still tells
                logger.warning("could not publish this process's counts to the run, or read the run's: %s", exc)
            self.distributed.close()
        self.dead_letters.close()

    def _report(self, reason: str, error: str | None, duration_s: float, signal_number: int | None) -> RunReport:
        not_started = sum(group.not_started for group in self.groups.values())
        report = build_report(
            self.spec,
            self.groups.values(),
            self.queues.values(),
            self.watch.loads,
            reason=reason,
            error=error,
            duration_s=duration_s,
            dead_letters=self.dead_letters,
            signal=signal_number,
            not_started=not_started,
        )
        report.run = self.run_report
        if self.started_at is not None:
            report.timeline = self.watch.final_timeline(self.started_at + duration_s)
        return report

    def _publish(self, distributed: Distributed, finished: bool) -> None:
        timeline = self.watch.final_timeline(time.monotonic()) if finished else None  # the last report carries it
        distributed.publish({name: group.counts() for name, group in self.groups.items()}, finished, timeline)

    def snapshot(self) -> Snapshot:
        """The run as it is now, for the live status (safe to call from another thread)."""
        elapsed = time.monotonic() - self.started_at if self.started_at else 0.0
        replayed = sum(len(items) for _, items in self._preloads)
        return snapshot_of(self.groups.values(), self.queues.values(), elapsed_s=elapsed, replayed=replayed)
