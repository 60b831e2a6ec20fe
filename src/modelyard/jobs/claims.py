"""Claims: queued jobs taken to run on this server (queued -> running), oldest first.

Whatever races a claim (another server, a cancel), a job is claimed at most once: the move is
:func:`~modelyard.jobs.store.move_jobs`, conditional on the job still being queued. With
PostgreSQL, where several servers dispatch from one store, the queued rows are also read
``FOR UPDATE SKIP LOCKED``: a server passes over the rows another is claiming and takes the next
ones, rather than waiting for those rows and finding them gone. SQLite has one writer at a time
and ignores the clause.

A fleet's small tenants are claimed in packs, to share a worker (:mod:`modelyard.jobs.packing`
says which and how many): :func:`claim_groups` claims queued jobs each with its pack-mates, and
:func:`claim_pack_mates` more tenants for a pack that asks for them.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from modelyard.jobs import packing
from modelyard.jobs.states import JobState
from modelyard.jobs.store import move_and_read_jobs
from modelyard.jobs.tables import JobRow


def claim_jobs(session: Session, limit: int, *, server_id: str) -> list[JobRow]:
    """Take up to ``limit`` queued jobs, oldest first, marking them running for this server.
    Commits; returns the jobs claimed, oldest first."""
    if limit <= 0:
        return []
    ids = session.scalars(
        select(JobRow.id)
        .where(JobRow.state == JobState.queued.value)
        .order_by(JobRow.created_at, JobRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return _claim(session, list(ids), server_id, "a worker slot is free")


def claim_groups(session: Session, free: int, *, server_id: str, slots: int,
                 packs: bool) -> list[list[JobRow]]:
    """Claim up to ``free`` queued jobs, oldest first, each with the pack-mates it takes when
    the executor runs packs (``packs``): a small tenant of a fleet brings more of its fleet's
    small tenants, within :data:`~modelyard.jobs.packing.PACK_ROWS_BUDGET` rows. Commits.

    Returns one group of jobs per worker to start, the claimed job first.
    """
    groups = []
    for job in claim_jobs(session, free, server_id=server_id):
        group = [job]
        budget = packing.rows_left(job.rows)
        if (packs and job.parent_id is not None
                and packing.packable(job.kind, job.parent_id, job.rows)
                and budget > 0):  # else a big tenant starts its pack alone
            group += claim_pack_mates(session, job.parent_id, have=1,
                                      at_least=packing.PACK_MIN_JOBS, rows_budget=budget,
                                      slots=slots, server_id=server_id)
        groups.append(group)
    return groups


def claim_pack_mates(session: Session, parent_id: str, *, have: int, at_least: int,
                     rows_budget: int, slots: int, server_id: str) -> list[JobRow]:
    """Claim queued small tenants of a fleet for a pack that holds ``have`` jobs already, as
    many as :func:`~modelyard.jobs.packing.siblings_to_claim` says for ``slots`` worker slots,
    within ``rows_budget`` rows. Commits."""
    waiting = count_small_siblings(session, parent_id, packing.PACK_MAX_ROWS)
    wanted = packing.siblings_to_claim(waiting, have, slots, at_least)
    return claim_small_siblings(session, parent_id, wanted, packing.PACK_MAX_ROWS,
                                server_id=server_id, rows_budget=rows_budget)


def count_small_siblings(session: Session, parent_id: str, max_rows: int) -> int:
    """How many of the fleet's tenants of at most ``max_rows`` rows are queued."""
    return int(session.scalar(
        select(func.count()).select_from(JobRow).where(_small_siblings(parent_id, max_rows))
    ) or 0)


def claim_small_siblings(session: Session, parent_id: str, limit: int, max_rows: int, *,
                         server_id: str, rows_budget: int) -> list[JobRow]:
    """Claim up to ``limit`` queued tenants of the fleet of at most ``max_rows`` rows each, to
    pack together, oldest first, while their rows add up to at most ``rows_budget`` (so packs
    stay balanced; :func:`~modelyard.jobs.packing.within_budget`). Commits."""
    if limit <= 0:
        return []
    candidates = session.execute(
        select(JobRow.id, JobRow.rows).where(_small_siblings(parent_id, max_rows))
        .order_by(JobRow.created_at, JobRow.id).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    chosen = packing.within_budget([(c.id, c.rows) for c in candidates], rows_budget)
    return _claim(session, chosen, server_id, "packed with other small tenants")


def _small_siblings(parent_id: str, max_rows: int) -> ColumnElement[bool]:
    return and_(JobRow.parent_id == parent_id, JobRow.kind == "tenant",
                JobRow.state == JobState.queued.value, JobRow.rows <= max_rows)


def _claim(session: Session, ids: list[str], server_id: str, reason: str) -> list[JobRow]:
    """queued -> running for those of ``ids`` still queued, in one UPDATE that returns their
    rows; commits; returns them in ``ids`` order."""
    claimed = move_and_read_jobs(session, ids, JobState.running, reason,
                                 server_id=server_id, current_step="starting")
    session.commit()
    return list(claimed.values())
