"""The dispatcher: a background loop that runs queued jobs on the executor and records what happens.

It is the only writer of running jobs. Executor threads put worker events on a queue; the loop
applies them in batches (one transaction per batch), claims queued jobs while slots are free,
kills cancelled and timed-out jobs, and at start-up recovers from a crash of the previous server:
queued jobs simply run, and jobs whose worker vanished end ``failed`` with a reason that says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker

from modelyard.artifacts import ArtifactStore
from modelyard.errors import Conflict
from modelyard.executors.base import Executor, Refillable, RunHandle
from modelyard.jobs import claims, fleet, store
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    LogLines,
    PackEnded,
    PackIdle,
    StepFinished,
    StepStarted,
    WorkerEvent,
    WorkerSpec,
    WorkerStarted,
)
from modelyard.protocol.results import FailureKind, FleetPlan, FleetRole, JobResult, failure
from modelyard.registry import store as registry_store
from modelyard.registry.stages import GLOBAL_TENANT
from modelyard.settings import Settings

log = logging.getLogger("modelyard.dispatcher")

_WAKE = object()  # a job was queued: claim
_CANCELLED = object()  # a job was cancelled: reconcile, then claim
_RECONCILE_EVERY_S = 1.0
# Tenants at most this big share workers (refilled, so a fleet forks about one per slot): a
# fresh worker's first job pays ~100 ms of page faults, more for bigger data. Measured on a
# 1M-row fleet: packing up to 200k rows instead of 20k cut the fleet's time by 10%.
PACK_MAX_ROWS = 200_000
PACK_ROWS_BUDGET = 40_000  # rows per pack, so packs take similar time and slots stay busy
PACK_MAX_JOBS = 64
PACK_BATCH_WINDOW_S = 0.25  # how long events are gathered into one transaction while packs run
# Packs shrink as the queue drains (waiting / slots); below this the saving in balance is worth
# less than another worker's start (a fork, and ~100 ms of first-job page faults measured).
PACK_MIN_JOBS = 8


@dataclass
class _Active:
    handle: RunHandle
    deadline: float | None
    timeout: float | None
    log_file: str | None


@dataclass
class _Pack:
    """A live refillable pack: its worker holds a slot even while idle between fills."""

    handle: Refillable
    parent_id: str


class Dispatcher:
    """Runs jobs from the store on an executor; start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        executor: Executor,
        on_change: Callable[[Mapping[str, bool]], None] = lambda changes: None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.executor = executor
        self.on_change = on_change
        self.host = socket.gethostname()
        self.server_id = f"{self.host}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._artifacts = ArtifactStore(settings.artifact_root)  # for fleets' partition roots
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._active: dict[str, _Active] = {}
        self._packs: dict[str, _Pack] = {}  # by pack id
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
        return list(self._active)

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> None:
        """Fail the running jobs of servers on this host that are gone; leave queued ones queued."""
        with self.sessions() as session:
            for job in store.running_jobs(session, server_prefix=f"{self.host}/"):
                owner_pid = _pid_of(job.server_id)
                if owner_pid is not None and owner_pid != os.getpid() and _alive(owner_pid):
                    continue  # another live server on this host owns it
                reason = (
                    f"the worker for this job vanished: its server ({job.server_id}) stopped "
                    f"while the job was running (step: {job.current_step or 'unknown'}); "
                    "resubmit the request"
                )
                try:
                    store.transition(
                        session, job.id, JobState.failed, reason,
                        exception_info=failure(FailureKind.worker_lost, reason,
                                               step=job.current_step),
                    )
                except Conflict:
                    continue
                _append_log(job.log_file, f"job failed: {reason}")
                log.warning("recovered job %s: %s", job.id, reason)
            session.commit()

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        last_reconcile = 0.0
        while not self._stopping.is_set():
            try:
                batch = [self._inbox.get(timeout=self._wait_time())]
            except queue.Empty:
                batch = []
            if batch and self._packs:
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
        a fraction of one each (measured: 12 ms of the server's CPU per batch). Nothing waits
        on the window: a pack asking for work is answered, and a freed slot filled, at once."""
        deadline = time.monotonic() + PACK_BATCH_WINDOW_S
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
        """Does ``event`` (with the jobs already ``ended`` in the batch, updated here) end the
        gathering? A pack waits for its answer (PackIdle), or a slot is free: a pack is gone, or
        a worker outside the packs has no job left (then a job can be claimed for it)."""
        if event is _WAKE or event is _CANCELLED or isinstance(event, PackIdle | PackEnded):
            return True  # a submit or cancel is acted on at once too
        if not isinstance(event, JobFinished | JobErrored):
            return False
        ended.add(event.job_id)
        active = self._active.get(event.job_id)
        if active is None:
            return False
        handle = active.handle
        if any(p.handle is handle for p in self._packs.values()):
            return False  # the pack asks for more (PackIdle) or ends (PackEnded) itself
        return all(j in ended for j, a in self._active.items() if a.handle is handle)

    def _wait_time(self) -> float:
        deadlines = [a.deadline for a in self._active.values() if a.deadline is not None]
        wait = _RECONCILE_EVERY_S
        if deadlines:
            wait = min(wait, max(0.0, min(deadlines) - time.monotonic()))
        return wait

    def _on_event(self, event: WorkerEvent) -> None:
        self._inbox.put(event)

    def _apply(self, events: list[WorkerEvent]) -> None:
        """Apply a batch of worker events in one transaction.

        Steps are coalesced: every finished step goes in with one INSERT, and only a job's
        latest started step is written as its current step (none once the job ended in the
        same batch). A fleet's packed tenants report a dozen events each within milliseconds,
        and one statement per event cost the server a core-second per hundred tenants.
        """
        idle = [e.job_id for e in events if isinstance(e, PackIdle)]
        for event in events:
            if isinstance(event, PackEnded):
                self._packs.pop(event.job_id, None)
        events = [e for e in events if not isinstance(e, PackIdle | PackEnded)]
        if events:
            self._apply_batch(events)
        for pack_id in idle:  # after the batch: what it finished is recorded first
            self._refill(pack_id)

    def _apply_batch(self, events: list[WorkerEvent]) -> None:
        touched: set[str] = {e.job_id for e in events}
        ended = {e.job_id for e in events if isinstance(e, JobFinished | JobErrored)}
        finished: list[dict[str, Any]] = []
        current: dict[str, str] = {}
        with self.sessions() as session:
            for event in events:
                if isinstance(event, StepStarted):
                    if event.job_id not in ended:
                        current[event.job_id] = event.name
                elif isinstance(event, StepFinished):
                    finished.append({"job_id": event.job_id, "name": event.name,
                                     "started_at": _utc(event.started_at),
                                     "duration_s": event.duration_s,
                                     "info": _jsonable(event.info)})
            store.record_steps(session, finished, current)
            store.set_workers(session, {e.job_id: (e.pid, e.host) for e in events
                                        if isinstance(e, WorkerStarted)})
            succeeded: dict[str, JobResult] = {}
            for event in events:
                if isinstance(event, JobFinished) and isinstance(event.result, JobResult):
                    succeeded[event.job_id] = event.result
                elif isinstance(event, LogLines | JobFinished | JobErrored):
                    self._apply_one(session, event)
            self._succeed(session, succeeded)
            parents, done_fleets = self._advance_fleets(session, ended)
            session.commit()
        # A parent is told "may have ended" only when it did: a fleet's long-poll re-reads
        # its (large) row at each such notice, and children end by the hundred.
        self.on_change({job_id: job_id in ended or job_id in done_fleets
                        for job_id in touched | parents})

    def _advance_fleets(self, session: Session, ended: set[str]) -> tuple[set[str], set[str]]:
        """After children ended: finish their fleets if nothing is left.
        Returns their parents, and those of them that finished."""
        parents = {p for p in store.parents_of(session, sorted(ended)) if p}
        return parents, self._advance_parents(session, parents)

    def _advance_parents(self, session: Session, parents: set[str]) -> set[str]:
        """Finish the fleets among ``parents`` whose children have all ended; returns those."""
        finished = set()
        for parent_id in parents:
            if fleet.advance(session, parent_id):
                finished.add(parent_id)
                _append_log(store.read_job(session, parent_id).log_file,
                            "fleet: every child has ended")
        return finished

    def _apply_one(self, session: Session, event: WorkerEvent) -> None:
        job_id = event.job_id
        active = self._active.get(job_id)
        if isinstance(event, LogLines):
            # A remote worker's output: appended as it came, like a local worker's own writes.
            if active is not None and active.log_file:
                try:
                    with open(active.log_file, "a") as fh:
                        fh.write(event.text)
                except OSError:
                    log.warning("cannot write to job log %s", active.log_file)
        elif isinstance(event, JobFinished) and isinstance(event.result, FleetPlan):
            self._active.pop(job_id, None)
            parent = store.read_job(session, job_id)
            if parent.state == JobState.running.value:
                parent.result = {"row_counts": event.result.row_counts}
                created = fleet.start_fleet(session, parent, event.result)
                _append_log(parent.log_file, f"fleet planned: {created} more models queued")
                fleet.advance(session, job_id)  # in case nothing was left to train
                self.wake()
        elif isinstance(event, JobErrored):
            self._active.pop(job_id, None)
            info = event.exception_info
            if (self._end(session, job_id, JobState.failed, info.reason, active,
                          exception_info=info)
                    and info.kind is FailureKind.not_started):
                # Its pack's worker died running another tenant: this one never ran.
                again = fleet.requeue_not_started(session, store.read_job(session, job_id))
                if again is not None:
                    _append_log(active.log_file if active else None,
                                f"queued again as job {again}")
                    self.wake()

    def _succeed(self, session: Session, results: dict[str, JobResult]) -> None:
        """Mark the jobs succeeded and register their models, in the same transaction and in a
        few statements for the whole batch (a pack's tenants end by the dozen)."""
        if not results:
            return
        actives = {job_id: self._active.pop(job_id, None) for job_id in results}
        reason = "the workflow trained and was evaluated"
        won = store.finish_many(session, {
            job_id: {"result": r.to_json(), "model_id": r.model_id, "git_commit": r.git_commit}
            for job_id, r in results.items()}, reason)
        jobs = store.read_jobs(session, won)
        versions = registry_store.register_versions(
            session, [_version_of(jobs[job_id], results[job_id]) for job_id in won])
        for job_id, version in zip(won, versions, strict=True):
            active = actives[job_id]
            log_file = active.log_file if active else None
            _append_log(log_file, f"job succeeded: {reason}")
            _append_log(log_file, f"registered as version {version.version} of "
                                  f"{version.model_name!r} ({version.stage})")

    def _end(self, session: Session, job_id: str, to: JobState, reason: str,
             active: _Active | None, **fields: Any) -> bool:
        try:
            store.transition(session, job_id, to, reason, **fields)
        except Conflict:
            return False  # cancelled or timed out meanwhile: that outcome stands
        if active is not None:
            _append_log(active.log_file, f"job {to.value}: {reason}")
        if to is JobState.failed and store.read_job(session, job_id).kind == "fleet":
            # The plan failed: the global model queued beside it has nothing to fall back for.
            store.cancel_children(session, job_id, f"its fleet {job_id} failed: {reason}"[:500])
        return True

    def _reconcile(self) -> None:
        """Kill workers whose job was cancelled (through any server) since they started, and
        move on fleets whose last children were cancelled."""
        with self.sessions() as session:
            stalled = store.fleets_waiting(session)
            if stalled:
                done_fleets = self._advance_parents(session, set(stalled))
                session.commit()
                self.on_change(dict.fromkeys(done_fleets, True))
            if not self._active:
                return
            states = store.states_of(session, list(self._active))
            stopped = {j for j, state in states.items() if state != JobState.running.value}
            # A cancelled job in a pack stops its pack; its pack-mates fail, to be retried.
            handles = {id(self._active[j].handle) for j in stopped if j in self._active}
            mates = [j for j, a in self._active.items()
                     if id(a.handle) in handles and j not in stopped]
            for job_id in mates:
                reason = ("stopped with its pack: another job packed into the same worker was "
                          "cancelled; retry it")
                self._end(session, job_id, JobState.failed, reason, self._active.get(job_id),
                          exception_info=failure(FailureKind.pack_stopped, reason))
            session.commit()
        for job_id in sorted(stopped | set(mates)):
            active = self._active.pop(job_id, None)
            if active is not None:
                active.handle.cancel()
                _append_log(active.log_file, f"job {states.get(job_id, 'failed')}: worker "
                                             "stopped")
        self.on_change(dict.fromkeys(stopped | set(mates), True))

    def _expire(self) -> None:
        now = time.monotonic()
        expired = [
            j for j, a in self._active.items() if a.deadline is not None and a.deadline <= now
        ]
        if not expired:
            return
        with self.sessions() as session:
            for job_id in expired:
                active = self._active.pop(job_id)
                active.handle.cancel()
                reason = (
                    f"timed out after {active.timeout:g} s and was killed; raise "
                    "timeout_seconds in the request (or --job-timeout) or make training faster"
                )
                self._end(session, job_id, JobState.failed, reason, active,
                          exception_info=failure(FailureKind.timeout, reason))
            session.commit()
        self.on_change(dict.fromkeys(expired, True))

    @property
    def _slots_used(self) -> int:
        return len({id(a.handle) for a in self._active.values()}
                   | {id(p.handle) for p in self._packs.values()})

    def _claim(self) -> None:
        free = self.settings.concurrency - self._slots_used
        if free <= 0 or self._stopping.is_set():
            return
        with self.sessions() as session:
            jobs = claims.claim_jobs(session, free, server_id=self.server_id)
            groups: list[list[JobRow]] = []
            for job in jobs:
                group = [job]
                budget = PACK_ROWS_BUDGET - (job.rows or 0)
                if self._packable(job) and budget > 0:  # a big tenant starts its pack alone
                    assert job.parent_id is not None
                    group += self._claim_siblings(session, job.parent_id, PACK_MIN_JOBS,
                                                  budget, have=1)
                groups.append(group)
        for group in groups:
            self._launch(group, pack=self._packable(group[0]))

    def _packable(self, job: JobRow) -> bool:
        """Small tenants share a worker: process start-up and bookkeeping would otherwise
        dominate their few-millisecond fits."""
        return (self.executor.packs and job.kind == "tenant" and job.parent_id is not None
                and (job.rows or 0) <= PACK_MAX_ROWS)

    def _claim_siblings(self, session: Session, parent_id: str, at_least: int,
                        rows_budget: int, have: int = 0) -> list[JobRow]:
        """Claim queued small tenants of a fleet for a pack that holds ``have`` jobs already:
        the waiting ones shared out over the slots (so the last packs end together), at
        least ``at_least`` in the pack while that many wait."""
        waiting = claims.count_small_siblings(session, parent_id, PACK_MAX_ROWS) + have
        size = min(PACK_MAX_JOBS, max(-(-waiting // self.settings.concurrency), at_least))
        return claims.claim_small_siblings(session, parent_id, size - have, PACK_MAX_ROWS,
                                          server_id=self.server_id, rows_budget=rows_budget)

    def _refill(self, pack_id: str) -> None:
        """An idle pack asks for more: its fleet's next small tenants, or none (it ends)."""
        pack = self._packs.get(pack_id)
        if pack is None:
            return
        jobs: list[JobRow] = []
        if not self._stopping.is_set():
            with self.sessions() as session:
                jobs = self._claim_siblings(session, pack.parent_id, 1, PACK_ROWS_BUDGET)
        if jobs and pack.handle.feed([self._spec(job) for job in jobs]):
            self._track(jobs, pack.handle)
            return
        pack.handle.feed([])
        self._packs.pop(pack_id, None)
        if jobs:  # the worker was gone before they reached it: they start a new one
            self._launch(jobs, pack=True)

    def _spec(self, job: JobRow) -> WorkerSpec:
        roots = self.settings.data_roots
        if job.parent_id and job.fleet is not None:
            roots = (*roots, self._artifacts.fleet_root(job.parent_id))
        return WorkerSpec(
            job_id=job.id,
            request=job.request,
            data_roots=roots,
            artifact_root=self.settings.artifact_root,
            workflow_modules=self.settings.workflow_modules,
            log_path=job.log_file,
            memory_limit=self.settings.job_memory_limit,
            threads=self._threads(job),
            fleet=FleetRole.from_json(job.fleet) if job.fleet else None,
        )

    def _threads(self, job: JobRow) -> int:
        """A job's share of the cores: its resources.num_cpus, else cores / concurrency."""
        asked = ((job.request.get("resources") or {}).get("num_cpus"))
        if asked:
            return max(1, int(asked))
        return self.settings.job_threads

    def _launch(self, jobs: list[JobRow], *, pack: bool = False) -> None:
        specs = [self._spec(job) for job in jobs]
        spec = specs[0]
        if pack and (len(specs) > 1 or self.executor.refills):
            spec = dataclasses.replace(specs[0], job_id=f"pack-{specs[0].job_id}",
                                       pack=tuple(specs), refill=self.executor.refills)
        try:
            handle = self.executor.start(spec, self._on_event)
        except Exception as exc:
            reason = f"the {self.executor.name} executor could not start the job: {exc}"
            info = failure(FailureKind.executor_error, reason, exc=exc)
            with self.sessions() as session:
                for job in jobs:
                    self._end(session, job.id, JobState.failed, reason, None,
                              exception_info=info)
                _, done_fleets = self._advance_fleets(session, {j.id for j in jobs})
                session.commit()
            self.on_change(dict.fromkeys([j.id for j in jobs] + sorted(done_fleets), True))
            return
        if spec.refill:
            assert jobs[0].parent_id is not None
            self._packs[spec.job_id] = _Pack(cast(Refillable, handle), jobs[0].parent_id)
        self._track(jobs, handle)

    def _track(self, jobs: list[JobRow], handle: RunHandle) -> None:
        """The jobs run on ``handle`` now: log where, start their clocks, tell watchers."""
        where = f"the {self.executor.name} executor (server {self.server_id})"
        for job in jobs:
            _append_log(job.log_file, f"job running on {where}" + (
                f", packed with {len(jobs) - 1} other small jobs" if len(jobs) > 1 else ""))
            timeout = job.timeout_seconds or self.settings.job_timeout
            self._active[job.id] = _Active(
                handle=handle,
                deadline=time.monotonic() + timeout if timeout else None,
                timeout=timeout,
                log_file=job.log_file,
            )
        self.on_change(dict.fromkeys([job.id for job in jobs], False))


def _version_of(job: JobRow, result: JobResult) -> dict[str, Any]:
    """The registry entry of a succeeded job's model."""
    request = job.request
    return {
        "model_name": job.model_name,
        "tenant": job.tenant or GLOBAL_TENANT,
        "model_id": result.model_id,
        "job_id": job.id,
        "metrics": result.metrics,
        "model_meta": dataclasses.asdict(result.model),
        "holdout": {"sampling": request["holdout_sampling"],
                    "path": request["data"]["features"]["path"]},
        "provenance_path": result.provenance_path,
    }


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, str | int | float | bool | None) else str(v))
            for k, v in info.items()}


def _pid_of(server_id: str | None) -> int | None:
    try:
        return int((server_id or "").split("/")[1])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _append_log(path: str | None, line: str) -> None:
    if not path:
        return
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{stamp} [modelyard] {line}\n")
    except OSError:
        log.warning("cannot write to job log %s", path)
