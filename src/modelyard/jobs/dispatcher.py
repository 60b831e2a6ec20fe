"""The dispatcher: a background loop that runs queued jobs on the executor and records what happens.

It is the only writer of running jobs. Executor threads put worker events on a queue; the loop
applies them in batches, one transaction each (:mod:`~modelyard.jobs.recording`), claims queued
jobs while slots are free (:mod:`~modelyard.jobs.claims`; small tenants of a fleet share a
worker: :mod:`~modelyard.jobs.packing`), kills cancelled and timed-out jobs, and moves fleets on
(:mod:`~modelyard.jobs.fleet`). Jobs whose server died end ``failed``, saying so: at start-up
(:mod:`~modelyard.jobs.recovery`) or when its lease runs out (:mod:`~modelyard.jobs.lease`).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker

from modelyard.artifacts import ArtifactStore
from modelyard.errors import Conflict
from modelyard.executors.base import Executor, Refillable, RunHandle
from modelyard.jobs import claims, fleet, packing, recording, recovery, store
from modelyard.jobs.joblog import JobLog
from modelyard.jobs.metrics import JobMetrics
from modelyard.jobs.running import LivePack, Run, Running
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.jobs.worker_specs import champions, pack_spec, worker_spec
from modelyard.protocol.events import (
    Champion,
    JobErrored,
    JobFinished,
    LogLines,
    PackEnded,
    PackIdle,
    TenantsReady,
    WorkerEvent,
    WorkerSpec,
)
from modelyard.protocol.results import ExceptionInfo, FailureKind, FleetPlan, JobResult, failure
from modelyard.protocol.steps import StepResult
from modelyard.settings import Settings

log = logging.getLogger("modelyard.dispatcher")

_WAKE = object()  # a job was queued: claim
_CANCELLED = object()  # a job was cancelled: reconcile, then claim
_RECONCILE_EVERY_S = 1.0


class Dispatcher:
    """Runs jobs from the store on an executor; start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        executor: Executor,
        on_change: Callable[[Mapping[str, bool]], None] = lambda changes: None,
        metrics: JobMetrics | None = None,
        server_id: str | None = None,  # the id its lease is held under (modelyard.jobs.lease)
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.executor = executor
        self.on_change = on_change
        self.host = socket.gethostname()
        self.server_id = server_id or f"{self.host}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._artifacts = ArtifactStore(settings.artifact_root)  # for fleets' partition roots
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._running = Running(metrics=metrics or JobMetrics())
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control, from any thread -------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="modelyard-dispatcher",
                                        daemon=True)
        self._thread.start()

    def wake(self, *, cancelled: bool = False) -> None:
        """A job was queued (or ``cancelled``: its worker must stop): look now rather than at
        the next tick. Only a cancel needs the running jobs checked against the store."""
        self._inbox.put(_CANCELLED if cancelled else _WAKE)

    def stop(self) -> None:
        self._stopping.set()
        self._inbox.put(_WAKE)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.close()

    @property
    def active_jobs(self) -> list[str]:
        return list(self._running.runs)

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> None:
        """Fail the running jobs of servers on this host that are gone; leave queued ones queued."""
        with self.sessions() as session:
            recovery.fail_orphaned_jobs(session, self.host)
            session.commit()

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        last_reconcile = 0.0
        while not self._stopping.is_set():
            try:
                batch = [self._inbox.get(
                    timeout=self._running.wait_time(_RECONCILE_EVERY_S, time.monotonic()))]
            except queue.Empty:
                batch = []
            if batch and self._running.packs:
                self._gather(batch)
            while True:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._apply([e for e in batch if e is not _WAKE and e is not _CANCELLED])
                if (time.monotonic() - last_reconcile >= _RECONCILE_EVERY_S
                        or _CANCELLED in batch):
                    self._reconcile()
                    last_reconcile = time.monotonic()
                self._expire()
                self._claim()
            except Exception:  # never let one bad batch stop the loop
                log.exception("dispatcher iteration failed; continuing")
                time.sleep(0.5)

    def _gather(self, batch: list[Any]) -> None:
        """While packs run, collect events for a moment before applying them: their tenants
        end every few tens of milliseconds, and one transaction for several costs the server
        a fraction of one each. Nothing waits on the window: a pack asking for work is
        answered, and a freed slot filled, at once."""
        deadline = time.monotonic() + packing.PACK_BATCH_WINDOW_S
        ended: set[str] = set()
        for event in batch:
            if self._apply_now(event, ended):
                return
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                event = self._inbox.get(timeout=left)
            except queue.Empty:
                return
            batch.append(event)
            if self._apply_now(event, ended):
                return

    def _apply_now(self, event: Any, ended: set[str]) -> bool:
        """Does ``event`` end the gathering? A submit or a cancel does, and what frees a slot or
        brings work for one (:meth:`Running.ends_gathering`; ``ended``: the batch's ended jobs)."""
        return event is _WAKE or event is _CANCELLED or self._running.ends_gathering(event, ended)

    def _on_event(self, event: WorkerEvent) -> None:
        self._inbox.put(event)

    def _apply(self, events: list[WorkerEvent]) -> None:
        """Apply a batch of worker events in one transaction (:mod:`modelyard.jobs.recording`
        keeps it to a few statements), then answer the packs that asked for more."""
        for event in events:
            if isinstance(event, PackEnded):
                self._running.packs.pop(event.job_id, None)
            elif isinstance(event, PackIdle) and event.job_id in self._running.packs:
                self._running.packs[event.job_id].asked = True
        events = [e for e in events if not isinstance(e, PackIdle | PackEnded)]
        if events:
            self._apply_batch(events)
        for pack_id, pack in list(self._running.packs.items()):
            if self._running.ready_to_fill(pack):  # after the batch: it is recorded first
                self._refill(pack_id, pack)

    def _apply_batch(self, events: list[WorkerEvent]) -> None:
        touched: set[str] = {e.job_id for e in events}
        ended = {e.job_id for e in events if isinstance(e, JobFinished | JobErrored)}
        with self.sessions() as session:
            recording.record_progress(session, events)
            self._running.metrics.steps_finished(events)
            succeeded: dict[str, JobResult] = {}
            for event in events:
                if isinstance(event, JobFinished) and isinstance(event.result, JobResult):
                    succeeded[event.job_id] = event.result
                elif isinstance(event, LogLines | JobFinished | JobErrored | TenantsReady):
                    self._apply_one(session, event)
            parents_known = self._succeed(session, succeeded)
            parents, done_fleets = fleet.on_children_ended(session, ended, parents_known)
            session.commit()
        # A parent is told "may have ended" only when it did: a fleet's long-poll re-reads
        # its (large) row at each such notice, and children end by the hundred.
        self.on_change({job_id: job_id in ended or job_id in done_fleets
                        for job_id in touched | parents})

    def _apply_one(self, session: Session, event: WorkerEvent) -> None:
        job_id = event.job_id
        active = self._running.runs.get(job_id)
        if isinstance(event, LogLines):
            # A remote worker's output: appended as it came, like a local worker's own writes.
            if active is not None:
                active.log.write_raw(event.text)
        elif isinstance(event, TenantsReady):  # claimed after this batch, packs refilled in it
            fleet.on_tenants_ready(session, job_id, event.tenants, event.segments)
        elif isinstance(event, JobFinished) and isinstance(event.result, FleetPlan):
            self._running.end(job_id, JobState.succeeded)
            if fleet.on_plan_finished(session, job_id, event.result) is not None:
                self.wake()
        elif isinstance(event, JobFinished) and isinstance(event.result, StepResult):
            run = self._running.take(job_id)
            won = recording.succeed_steps(session, {job_id: event.result})  # registers nothing
            self._running.ended(run, JobState.succeeded if won else JobState.cancelled)
            if won and active:
                active.log.append(f"job succeeded: {event.result.summary}")
        elif isinstance(event, JobErrored):
            self._running.end(job_id, JobState.failed)
            info = event.exception_info
            if (self._end(session, job_id, JobState.failed, info.reason, active,
                          exception_info=info)
                    and info.kind is FailureKind.not_started
                    # Its pack's worker died running another tenant: this one never ran.
                    and fleet.requeue_not_started(session, job_id) is not None):
                self.wake()

    def _succeed(self, session: Session, results: dict[str, JobResult]
                 ) -> dict[str, str | None]:
        """Mark the jobs succeeded and register their models, in the same transaction.
        Returns the parent of each job that succeeded (None: not a fleet's child)."""
        actives = {job_id: self._running.take(job_id) for job_id in results}
        ended = recording.succeed_jobs(session, results)
        won = {job.id: job.parent_id for job, _ in ended}  # the others were cancelled meanwhile
        for job_id, run in actives.items():
            self._running.ended(run, JobState.succeeded if job_id in won else JobState.cancelled)
        for job, version in ended:
            job_id, active = job.id, actives[job.id]
            job_log = active.log if active else JobLog(None)
            job_log.append(f"job succeeded: {recording.SUCCEEDED}")
            if version is None:
                job_log.append("a replay: its model is not registered (compare it with the "
                               f"original: GET /jobs/{job_id}/replay)")
            else:
                job_log.append(f"registered as version {version.version} of "
                               f"{version.model_name!r} ({version.stage})")
        return won

    def _end(self, session: Session, job_id: str, to: JobState, reason: str,
             active: Run | None, **fields: Any) -> bool:
        try:
            store.transition(session, job_id, to, reason, **fields)
        except Conflict:
            return False  # cancelled or timed out meanwhile: that outcome stands
        if active is not None:
            active.log.append(f"job {to.value}: {reason}")
            info = fields.get("exception_info")
            if isinstance(info, ExceptionInfo) and info.traceback:
                # For operators: API answers show it only from a server run with --debug.
                active.log.write_raw(info.traceback)
        if to is JobState.failed:
            fleet.on_failed(session, job_id, reason)
        return True

    def _reconcile(self) -> None:
        """Kill workers whose job was cancelled (through any server) since they started, and
        move on fleets whose last children were cancelled."""
        with self.sessions() as session:
            stalled = store.fleets_waiting(session)
            if stalled:
                done_fleets = fleet.advance_parents(session, stalled)
                session.commit()
                self.on_change(dict.fromkeys(done_fleets, True))
            if not self._running.runs:
                return
            states = store.states_of(session, list(self._running.runs))
            stopped = {j for j, state in states.items() if state != JobState.running.value}
            # A cancelled job in a pack stops its pack; its pack-mates fail, to be retried.
            mates = self._running.pack_mates(stopped)
            for job_id in mates:
                reason = ("stopped with its pack: another job packed into the same worker was "
                          "cancelled; retry it")
                self._end(session, job_id, JobState.failed, reason,
                          self._running.runs.get(job_id),
                          exception_info=failure(FailureKind.pack_stopped, reason))
            session.commit()
        for job_id in sorted(stopped | set(mates)):
            active = self._running.end(job_id, states[job_id] if job_id in stopped
                                       else JobState.failed)
            if active is not None:
                active.handle.cancel()
                active.log.append(f"job {states.get(job_id, 'failed')}: worker stopped")
        self.on_change(dict.fromkeys(stopped | set(mates), True))

    def _expire(self) -> None:
        expired = self._running.expired(time.monotonic())
        if not expired:
            return
        with self.sessions() as session:
            for job_id in expired:
                active = self._running.runs[job_id]  # expired() lists running jobs
                self._running.end(job_id, JobState.failed)
                active.handle.cancel()
                reason = (
                    f"timed out after {active.timeout:g} s and was killed; raise "
                    "timeout_seconds in the request (or --job-timeout) or make training faster"
                )
                self._end(session, job_id, JobState.failed, reason, active,
                          exception_info=failure(FailureKind.timeout, reason))
            session.commit()
        self.on_change(dict.fromkeys(expired, True))

    def _claim(self) -> None:
        free = self.settings.concurrency - self._running.slots_used()
        if free <= 0 or self._stopping.is_set():
            return
        with self.sessions() as session:
            groups = claims.claim_groups(session, free, server_id=self.server_id,
                                         slots=self.settings.concurrency,
                                         packs=self.executor.packs)
            found = champions(session, [job for group in groups for job in group])
        for group in groups:
            self._launch(group, found, pack=packing.opens_pack(
                group[0].kind, group[0].parent_id, group[0].rows, packs=self.executor.packs,
                refills=self.executor.refills))

    def _refill(self, pack_id: str, pack: LivePack) -> None:
        """A pack asked for more: its fleet's next small tenants, or none (it ends). While
        its fleet is being planned it waits, asking still: the plan's tenants come soon."""
        jobs: list[JobRow] = []
        found: dict[str, Champion] = {}
        if not self._stopping.is_set():
            with self.sessions() as session:
                jobs = claims.claim_pack_mates(
                    session, pack.parent_id, have=0, at_least=1,
                    rows_budget=packing.PACK_ROWS_BUDGET, slots=self.settings.concurrency,
                    server_id=self.server_id)
                found = champions(session, jobs)
                if not jobs and fleet.planning(session, pack.parent_id):
                    return
        pack.asked = False
        if jobs and pack.handle.feed(self._specs(jobs, found)):
            self._track(jobs, pack.handle)
            return
        pack.handle.feed([])
        self._running.packs.pop(pack_id, None)
        if jobs:  # the worker was gone before they reached it: they start a new one
            self._launch(jobs, found, pack=True)

    def _specs(self, jobs: list[JobRow], found: Mapping[str, Champion]) -> list[WorkerSpec]:
        """The jobs' specs, each with the production version it is compared with (``found``,
        by job id: looked up in the transaction that claimed them)."""
        return [worker_spec(job, self.settings, self._artifacts, found.get(job.id))
                for job in jobs]

    def _launch(self, jobs: list[JobRow], found: Mapping[str, Champion], *,
                pack: bool = False) -> None:
        specs = self._specs(jobs, found)
        spec = specs[0]
        # A pack's fleet: packs hold one fleet's jobs (its plan is the fleet's own job).
        parent_id = jobs[0].parent_id or (jobs[0].id if jobs[0].kind == "fleet" else None)
        if pack and parent_id is not None and (len(specs) > 1 or self.executor.refills):
            spec = pack_spec(specs, refill=self.executor.refills)
        try:
            handle = self.executor.start(spec, self._on_event)
        except Exception as exc:
            reason = f"the {self.executor.name} executor could not start the job: {exc}"
            info = failure(FailureKind.executor_error, reason, exc=exc)
            with self.sessions() as session:
                for job in jobs:
                    self._end(session, job.id, JobState.failed, reason, None,
                              exception_info=info)
                _, done_fleets = fleet.on_children_ended(session, [j.id for j in jobs])
                session.commit()
            self.on_change(dict.fromkeys([j.id for j in jobs] + sorted(done_fleets), True))
            return
        if spec.refill and parent_id is not None:
            self._running.packs[spec.job_id] = LivePack(cast(Refillable, handle), parent_id)
        self._track(jobs, handle)

    def _track(self, jobs: list[JobRow], handle: RunHandle) -> None:
        """The jobs run on ``handle`` now: log where, start their clocks, tell watchers."""
        where = f"the {self.executor.name} executor (server {self.server_id})"
        for job in jobs:
            job_log = JobLog(job.log_file)
            job_log.append(f"job running on {where}" + (
                f", packed with {len(jobs) - 1} other small jobs" if len(jobs) > 1 else ""))
            timeout = job.timeout_seconds or self.settings.job_timeout
            self._running.runs[job.id] = Run(
                handle=handle, deadline=time.monotonic() + timeout if timeout else None,
                timeout=timeout, log=job_log, kind=job.kind)
        self.on_change(dict.fromkeys([job.id for job in jobs], False))
