"""Recovery: the running jobs of a server that is gone end ``failed``, saying so, exactly once.

A job left ``running`` by a server that is gone has lost its worker too: a worker exits when its
server goes away. Two ways find such servers:

- at start-up, a server fails at once the jobs of the servers of its own host whose process no
  longer exists (:func:`fail_orphaned_jobs`), so a restart need not wait for a lease;
- on every host, a server whose lease has run out (:mod:`modelyard.jobs.servers`) is taken over
  by one live server, which fails its running jobs in the transaction that marks it taken over
  (:func:`take_over_expired`).

Queued jobs need nothing: they were never a server's own, and any live server claims them. A
fleet parent whose plan is done waits on its children, not on a worker: it is left running, and
the server that ends its last child (or the dispatcher's check of waiting fleets) finishes it.
Requests carry no retry setting, so a lost job fails rather than runs again; its failure names
the server and what to do.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from modelyard.errors import Conflict
from modelyard.jobs import fleet, servers, store
from modelyard.jobs.joblog import JobLog
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow, ServerRow
from modelyard.protocol.results import FailureKind, failure

log = logging.getLogger("modelyard.dispatcher")


def fail_orphaned_jobs(session: Session, host: str) -> list[str]:
    """Fail the running jobs of this host's servers whose process is gone, and finish the
    fleets that thereby ended (does not commit).

    Returns the ids of the jobs failed.
    """
    failed = []
    for job in _lost_jobs(session, JobRow.server_id.startswith(f"{host}/")):
        owner_pid = _pid_of(job.server_id)
        if owner_pid is not None and owner_pid != os.getpid() and servers.pid_alive(owner_pid):
            continue  # another live server on this host owns it
        reason = (
            f"the worker for this job vanished: its server ({job.server_id}) stopped "
            f"while the job was running (step: {job.current_step or 'unknown'}); "
            "resubmit the request"
        )
        if _fail(session, job, reason):
            failed.append(job.id)
    if failed:
        fleet.on_children_ended(session, failed)
    return failed


def take_over_expired(session: Session, me: str) -> list[str]:
    """Take over the servers whose lease has run out (each by one server only) and fail their
    running jobs, naming the server and its lease; finish the fleets that thereby ended. Does
    not commit. Returns the ids of the jobs failed."""
    failed: list[str] = []
    for gone in servers.take_over_expired(session, me):
        lost = [job.id for job in _lost_jobs(session, JobRow.server_id == gone.id)
                if _fail(session, job, _lease_reason(gone, job))]
        log.warning("took over server %s (host %s, lease ran out at %s): %d of its running "
                    "jobs failed", gone.id, gone.host, _at(gone.lease_expires_at), len(lost))
        failed += lost
    if failed:
        fleet.on_children_ended(session, failed)
    return failed


def _lease_reason(gone: ServerRow, job: JobRow) -> str:
    step = job.current_step or "unknown"
    if gone.stopped_at is not None:
        return (f"server {gone.id} on host {gone.host} stopped at {_at(gone.stopped_at)} "
                f"while the job was running (step: {step}); the job's worker went with it; "
                "resubmit the request")
    return (f"server {gone.id} on host {gone.host} stopped renewing its lease at "
            f"{_at(gone.renewed_at)} (it ran out at {_at(gone.lease_expires_at)}) while the "
            f"job was running (step: {step}); the job's worker went with it; resubmit the "
            "request")


def _lost_jobs(session: Session, owned: ColumnElement[bool]) -> list[JobRow]:
    """Running jobs matching ``owned`` that had a worker: all but fleet parents whose plan is
    done (they wait on their children)."""
    had_worker = or_(JobRow.kind != "fleet", JobRow.current_step.is_(None),
                     JobRow.current_step != "children")
    return list(session.scalars(select(JobRow).where(
        JobRow.state == JobState.running.value, owned, had_worker)).all())


def _fail(session: Session, job: JobRow, reason: str) -> bool:
    try:
        store.transition(
            session, job.id, JobState.failed, reason,
            exception_info=failure(FailureKind.worker_lost, reason, step=job.current_step),
        )
    except Conflict:
        return False  # it ended meanwhile: that outcome stands
    fleet.on_failed(session, job.id, reason)  # a plan's failure cancels its queued children
    JobLog(job.log_file).append(f"job failed: {reason}")
    log.warning("recovered job %s: %s", job.id, reason)
    return True


def _at(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pid_of(server_id: str | None) -> int | None:
    """The process id in a server id (``host/pid/nonce``)."""
    try:
        return int((server_id or "").split("/")[1])
    except (IndexError, ValueError):
        return None
