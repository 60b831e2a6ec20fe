"""Store functions: every read and write of the job store (verb_noun, one transaction each).

Routes and the dispatcher call these and never write SQL themselves. Every state change goes
through :func:`move_jobs`: per allowed source state, one conditional UPDATE (``WHERE state =
source``), so two writers racing for one job (a cancel and a claim, say) cannot both win, and
one INSERT of the moves' audit rows. :func:`transition` is its single form, a batch of one that
raises when the job did not move; :func:`finish_many`, :func:`cancel_children` and the claims in
:mod:`modelyard.jobs.claims` move many jobs at once. :func:`insert_jobs` writes new jobs with
their created and queued transitions.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from modelyard.errors import Conflict, NotFound
from modelyard.jobs.states import TERMINAL, JobState, sources_of
from modelyard.jobs.tables import JobRow, StepRow, TransitionRow
from modelyard.protocol.results import ExceptionInfo
from modelyard.request.models import TrainRequest, request_hash
from modelyard.sql.base import table_of

_JOBS = table_of(JobRow)  # Core statements: executemany, RETURNING


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class NewJob:
    """One job to queue with :func:`insert_jobs`: its request in JSON form, as
    ``TrainRequest.model_dump(mode="json")`` gives it, and its place in a fleet."""

    request: dict[str, Any]
    kind: str
    parent_id: str | None = None
    tenant: str | None = None
    rows: int | None = None
    fleet: dict[str, Any] | None = None
    replay_of: str | None = None  # the job a replay reruns (modelyard.jobs.replay)


def create_job(
    session: Session,
    request: TrainRequest,
    *,
    executor: str,
    logs_dir: Path,
    kind: str | None = None,
    parent_id: str | None = None,
    tenant: str | None = None,
    rows: int | None = None,
    fleet: dict[str, Any] | None = None,
    commit: bool = True,
    submitted_by: str | None = None,
) -> JobRow:
    """Store a new job for ``request`` and queue it (created -> queued, in one transaction).

    A request with ``tenants`` becomes a fleet parent (kind ``fleet``); the fleet's children pass
    their ``kind``, ``parent_id``, ``tenant`` and ``fleet`` details. ``submitted_by``: the token
    identity that asked for it (four eyes: it may not approve what the job trains).
    """
    new = NewJob(request.model_dump(mode="json"),
                 kind or ("fleet" if request.tenants is not None else "train"),
                 parent_id, tenant, rows, fleet)
    (job_id,) = insert_jobs(session, request, [new], executor=executor, logs_dir=logs_dir,
                            submitted_by=submitted_by)
    if commit:
        session.commit()
    return read_job(session, job_id)


def insert_jobs(session: Session, template: TrainRequest, jobs: Sequence[NewJob], *,
                executor: str, logs_dir: Path, submitted_by: str | None = None) -> list[str]:
    """Queue many jobs at once: one INSERT for the jobs and one for their transitions
    (created, then queued). Does not commit; returns the new ids in order.

    Metadata, workflow, resources and timeout come from ``template``: a fleet's children share
    them with their parent, and only their data path, filters and fleet details differ. They
    are claimed in the order given. Plain Core INSERTs, because a fleet queues its tenants by
    the thousand and an ORM flush per row would take the dispatcher's time.
    """
    at = now()
    meta = template.metadata
    common = {
        "state": JobState.queued.value, "model_name": meta.model_name, "owner": meta.owner,
        "project": meta.project, "trainer": meta.trainer,
        "workflow_name": template.train.workflow_name,
        "compute_resource": template.compute_resource.value, "executor": executor,
        "timeout_seconds": template.timeout_seconds, "submitted_by": submitted_by,
    }
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    transitions: list[dict[str, Any]] = []
    for i, job in enumerate(jobs):
        job_id = uuid.uuid4().hex
        ids.append(job_id)
        # A microsecond apart: jobs are claimed oldest first, so they run in the given order.
        created = at + dt.timedelta(microseconds=i)
        rows.append({**common, "created_at": created, "updated_at": created, "id": job_id,
                     "request": job.request,
                     "request_hash": request_hash(job.request),
                     "log_file": str(logs_dir / f"{job_id}.log"), "kind": job.kind,
                     "parent_id": job.parent_id, "tenant": job.tenant, "rows": job.rows,
                     "fleet": job.fleet, "replay_of": job.replay_of})
        transitions += [
            {"job_id": job_id, "from_state": None, "to_state": JobState.created.value,
             "at": at, "reason": "request accepted"},
            {"job_id": job_id, "from_state": JobState.created.value,
             "to_state": JobState.queued.value, "at": at, "reason": "waiting for a worker slot"},
        ]
    if rows:
        session.execute(insert(table_of(JobRow)), rows)
        session.execute(insert(table_of(TransitionRow)), transitions)
    return ids


def transition_fields(session: Session, job_id: str, **fields: Any) -> None:
    """Update columns of a job without changing its state (does not commit)."""
    session.execute(update(JobRow).where(JobRow.id == job_id)
                    .values(updated_at=now(), **fields)
                    .execution_options(synchronize_session=False))


def read_job(session: Session, job_id: str, *, fresh: bool = False,
             lock: bool = False) -> JobRow:
    """The job row; ``fresh`` reloads it even if this session has it already, ``lock`` also
    locks it until the transaction ends (``FOR UPDATE``; SQLite has one writer anyway)."""
    job = session.get(JobRow, job_id, populate_existing=fresh or lock,
                      with_for_update=lock or None)
    if job is None:
        raise NotFound(f"no job {job_id!r}; list jobs with GET /jobs or `modelyard jobs list`")
    return job


def read_jobs(session: Session, job_ids: Sequence[str]) -> dict[str, JobRow]:
    """The rows of ``job_ids`` (those that exist), in one query."""
    if not job_ids:
        return {}
    return {r.id: r for r in session.scalars(select(JobRow).where(JobRow.id.in_(job_ids)))}


def snapshot_job(
    session: Session, job_id: str
) -> tuple[JobRow, list[TransitionRow], list[StepRow]]:
    """A job with its transitions and steps, all as of one moment.

    SQLite's driver runs each SELECT in its own snapshot, so a writer can commit between the
    reads; every write bumps ``updated_at``, so re-read until the job row did not change.
    """
    for _ in range(5):
        job = read_job(session, job_id, fresh=True)
        transitions, steps = transitions_of(session, job_id), steps_of(session, job_id)
        stamp = session.execute(
            select(JobRow.state, JobRow.updated_at).where(JobRow.id == job_id)
        ).one()
        if (stamp.state, stamp.updated_at) == (job.state, job.updated_at):
            break
    return job, transitions, steps


def transition(
    session: Session, job_id: str, to: JobState, reason: str, *,
    exception_info: ExceptionInfo | None = None, **fields: Any
) -> None:
    """Move a job to ``to`` if the state machine allows it from its current state.

    Stamps the time and the reason, sets ``started_at``/``finished_at``, the failure's
    ``exception_info`` and any extra column in ``fields`` in the same UPDATE. Does not commit.
    The single form of :func:`move_jobs`.

    Raises:
        NotFound: no such job.
        Conflict: the job's current state does not allow the move (it may have changed under us).
    """
    if exception_info is not None:
        fields["exception_info"] = exception_info.to_json()
    if move_jobs(session, [job_id], to, reason, **fields):
        return
    current = session.scalar(select(JobRow.state).where(JobRow.id == job_id))
    if current is None:
        raise NotFound(f"no job {job_id!r}")
    if current in {s.value for s in sources_of(to)}:
        raise Conflict(f"job {job_id} keeps changing state; it did not become {to.value}")
    raise Conflict(f"job {job_id} is {current}; it cannot become {to.value}")


def move_jobs(session: Session, ids: Sequence[str], to: JobState, reason: str,
              **fields: Any) -> list[str]:
    """Move those of ``ids`` whose state allows it (:func:`~modelyard.jobs.states.sources_of`)
    to ``to``, with their audit rows. Does not commit; returns the moved ids in ``ids`` order.

    Stamps the time, sets ``started_at``/``finished_at`` and the columns in ``fields``. A job
    that cannot make the move (it ended, or does not exist) is left as it is: the caller
    decides whether that is an error (:func:`transition`) or a race lost (a claim).
    """
    return list(_move(session, ids, to, reason, fields, rows=False))


def move_and_read_jobs(session: Session, ids: Sequence[str], to: JobState, reason: str,
                       **fields: Any) -> dict[str, JobRow]:
    """:func:`move_jobs`, returning the moved jobs' rows as the move left them (by id, in
    ``ids`` order), read by the UPDATE itself: claims and successes go on with them."""
    return {j: row for j, row in _move(session, ids, to, reason, fields, rows=True).items()
            if row is not None}


def _move(session: Session, ids: Sequence[str], to: JobState, reason: str,
          fields: dict[str, Any], *, rows: bool) -> dict[str, JobRow | None]:
    """The moved ids in ``ids`` order, each with its row if ``rows`` (else None)."""
    sources = sources_of(to)
    if not ids or not sources:
        return {}
    session.flush()  # this session's pending changes first: the move's columns win
    at = now()
    values = _stamped(to, at, fields)
    unique = list(dict.fromkeys(ids))
    left = unique
    moved: dict[str, str] = {}
    loaded: dict[str, JobRow] = {}
    # One UPDATE per source, conditional on it, so the audit row's from_state is exact. Sources
    # go in the machine's order (created, queued, running) and jobs only move forward, so a job
    # that moves on between two statements is met at its next state.
    for source in (s for s in JobState if s in sources):
        if rows:
            found = session.scalars(
                update(JobRow).where(JobRow.id.in_(left), JobRow.state == source.value)
                .values(**values).returning(JobRow)
                .execution_options(synchronize_session=False, populate_existing=True)).all()
            loaded.update((row.id, row) for row in found)
            done = {row.id for row in found}
        else:
            done = set(session.scalars(
                update(_JOBS).where(_JOBS.c.id.in_(left), _JOBS.c.state == source.value)
                .values(**values).returning(_JOBS.c.id)).all())
        moved.update(dict.fromkeys(done, source.value))
        left = [j for j in left if j not in done]
        if not left:
            break
    if moved:
        session.execute(insert(table_of(TransitionRow)), [
            {"job_id": j, "from_state": from_state, "to_state": to.value, "at": at,
             "reason": reason} for j, from_state in moved.items()])
    return {j: loaded.get(j) for j in unique if j in moved}


def cancel_job(session: Session, job_id: str, reason: str) -> JobRow:
    """Cancel a job that has not ended. Killing its worker is the dispatcher's part."""
    job = read_job(session, job_id)
    if JobState(job.state).terminal:
        raise Conflict(f"job {job_id} has already ended ({job.state}); nothing to cancel")
    transition(session, job_id, JobState.cancelled, reason)
    if job.kind == "fleet":  # a fleet's children go with it
        cancel_children(session, job_id, f"its fleet {job_id} was cancelled")
    session.commit()
    session.refresh(job)
    return job


def cancel_children(session: Session, parent_id: str, reason: str) -> list[str]:
    """Cancel the children of a fleet that have not ended (does not commit); returns them.

    Their workers are stopped by the dispatcher, which sees the state change.
    """
    return move_jobs(session, child_ids(session, parent_id), JobState.cancelled, reason)


def running_jobs(session: Session, *, server_prefix: str | None = None) -> list[JobRow]:
    query = select(JobRow).where(JobRow.state == JobState.running.value)
    if server_prefix is not None:
        query = query.where(JobRow.server_id.startswith(server_prefix))
    return list(session.scalars(query).all())


def states_of(session: Session, job_ids: Sequence[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    rows = session.execute(select(JobRow.id, JobRow.state).where(JobRow.id.in_(job_ids)))
    return {r.id: r.state for r in rows}


def set_workers(session: Session, workers: dict[str, tuple[int, str]]) -> None:
    """Record each running job's worker ``(pid, host)``, in one executemany UPDATE."""
    if workers:
        session.execute(
            update(_JOBS)
            .where(_JOBS.c.id == bindparam("b_id"), _JOBS.c.state == JobState.running.value)
            .values(worker_pid=bindparam("b_pid"), worker_host=bindparam("b_host"),
                    updated_at=now()),
            [{"b_id": j, "b_pid": pid, "b_host": host} for j, (pid, host) in workers.items()])


def finish_many(session: Session, results: dict[str, dict[str, Any]],
                reason: str) -> dict[str, JobRow]:
    """Mark running jobs ``succeeded`` with their columns (``results[job_id]``: result,
    model_id, git_commit), in three statements whatever their number. Does not commit.

    The columns go to the jobs still running, and then the state, in one conditional UPDATE
    (``state = 'running'``) that returns the rows it moved: a job cancelled or timed out
    meanwhile keeps that outcome and no result. The first UPDATE holds the rows it wrote
    (PostgreSQL locks them, SQLite has one writer): the move finds them all still running.
    Returns the rows of the jobs that succeeded, by id.
    """
    if not results:
        return {}
    session.execute(
        update(_JOBS).where(_JOBS.c.id == bindparam("b_id"),
                            _JOBS.c.state == JobState.running.value)
        .values(result=bindparam("b_result"), model_id=bindparam("b_model_id"),
                git_commit=bindparam("b_git_commit")),
        [{"b_id": j, "b_result": r.get("result"), "b_model_id": r.get("model_id"),
          "b_git_commit": r.get("git_commit")} for j, r in results.items()])
    return move_and_read_jobs(session, list(results), JobState.succeeded, reason)


def _stamped(to: JobState, at: dt.datetime, fields: dict[str, Any]) -> dict[str, Any]:
    """The columns a move to ``to`` at ``at`` sets, besides ``fields``."""
    values: dict[str, Any] = {"state": to.value, "updated_at": at, **fields}
    if to is JobState.running:
        values.setdefault("started_at", at)
    if to in TERMINAL:
        values["finished_at"] = at
        values.setdefault("current_step", None)
    return values


def record_steps(session: Session, finished: list[dict[str, Any]],
                 current: dict[str, str]) -> None:
    """Store finished steps (StepRow column values) in one statement, and each job's current step.

    Every job touched gets its ``updated_at`` bumped, as :func:`snapshot_job` relies on.
    """
    at = now()
    if finished:
        session.execute(insert(table_of(StepRow)), finished)
    if current:
        session.execute(
            update(_JOBS)
            .where(_JOBS.c.id == bindparam("b_id"), _JOBS.c.state == JobState.running.value)
            .values(current_step=bindparam("b_step"), updated_at=at),
            [{"b_id": job_id, "b_step": name} for job_id, name in current.items()])
    rest = sorted({f["job_id"] for f in finished} - set(current))
    if rest:
        session.execute(update(JobRow).where(JobRow.id.in_(rest)).values(updated_at=at))


def transitions_of(session: Session, job_id: str) -> list[TransitionRow]:
    return list(
        session.scalars(
            select(TransitionRow).where(TransitionRow.job_id == job_id).order_by(TransitionRow.id)
        ).all()
    )


def steps_of(session: Session, job_id: str) -> list[StepRow]:
    return list(
        session.scalars(select(StepRow).where(StepRow.job_id == job_id).order_by(StepRow.id)).all()
    )


def parents_of(session: Session, job_ids: Sequence[str]) -> set[str | None]:
    if not job_ids:
        return set()
    return set(session.scalars(select(JobRow.parent_id).where(JobRow.id.in_(job_ids))).all())


def child_ids(session: Session, parent_id: str) -> list[str]:
    return list(session.scalars(select(JobRow.id).where(JobRow.parent_id == parent_id)).all())


def fleets_waiting(session: Session) -> list[str]:
    """Running fleet parents that wait on their children (checked in case a child was cancelled)."""
    return list(session.scalars(select(JobRow.id).where(
        JobRow.kind == "fleet", JobRow.state == JobState.running.value,
        JobRow.current_step == "children")).all())


def count_unfinished_children(session: Session, parent_id: str) -> int:
    unfinished = [s.value for s in JobState if not s.terminal]
    return int(session.scalar(select(func.count()).select_from(JobRow).where(
        JobRow.parent_id == parent_id, JobRow.state.in_(unfinished))) or 0)

