"""Store functions on a real database: claims (alone, racing each other and cancels, in packs),
finishing in a batch, cancelling a fleet's children. On PostgreSQL the races run on real
concurrent connections."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from modelyard.jobs import claims, packing, store
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow, TransitionRow
from tests.jobs.conftest import force_state, queue_jobs


def _states(session: Session) -> dict[str, str]:
    session.expire_all()
    return {r.id: r.state for r in session.execute(select(JobRow.id, JobRow.state))}


def _moves_out_of_queued(session: Session) -> Counter[str]:
    return Counter(session.scalars(select(TransitionRow.job_id).where(
        TransitionRow.from_state == JobState.queued.value)).all())


def _run_together(workers: list[Callable[[], None]]) -> None:
    """Run each function in its own thread, started together; re-raise the first error."""
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        start.wait()
        try:
            fn()
        except BaseException as exc:  # noqa: B036 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0]


def test_claims_take_the_oldest_queued_jobs_for_this_server(session: Session,
                                                             tmp_path: Path) -> None:
    ids = queue_jobs(session, 5, tmp_path)
    force_state(session, ids[0], JobState.cancelled)
    claimed = claims.claim_jobs(session, 3, server_id="host/1/a")
    assert [j.id for j in claimed] == ids[1:4]
    for job in claimed:
        assert (job.state, job.server_id, job.current_step) == ("running", "host/1/a",
                                                                 "starting")
        assert job.started_at is not None
        assert store.transitions_of(session, job.id)[-1].reason == "a worker slot is free"
    assert claims.claim_jobs(session, 0, server_id="host/1/a") == []
    assert [j.id for j in claims.claim_jobs(session, 9, server_id="host/1/b")] == [ids[4]]
    assert claims.claim_jobs(session, 9, server_id="host/1/b") == []


def test_racing_claimers_claim_each_job_exactly_once(sessions: sessionmaker[Session],
                                                     session: Session, tmp_path: Path) -> None:
    ids = queue_jobs(session, 60, tmp_path)
    claimed: dict[str, list[str]] = {}

    def claimer(name: str) -> Callable[[], None]:
        def run() -> None:
            mine = claimed.setdefault(name, [])
            with sessions() as own:  # its own connection
                while batch := claims.claim_jobs(own, 4, server_id=name):
                    mine += [j.id for j in batch]
        return run

    _run_together([claimer(f"server-{i}") for i in range(4)])
    every = [j for mine in claimed.values() for j in mine]
    assert sorted(every) == sorted(ids)  # all of them, none twice
    owners = {r.id: r.server_id for r in session.execute(select(JobRow.id, JobRow.server_id))}
    assert all(owners[j] == name for name, mine in claimed.items() for j in mine)
    assert _moves_out_of_queued(session) == Counter(ids)  # one audited move each


def test_a_cancel_racing_a_claim_leaves_one_exact_history_per_job(
        sessions: sessionmaker[Session], session: Session, tmp_path: Path) -> None:
    ids = queue_jobs(session, 40, tmp_path)
    claimed: list[str] = []

    def claim() -> None:
        with sessions() as own:
            while batch := claims.claim_jobs(own, 3, server_id="claimer"):
                claimed.extend(j.id for j in batch)

    def cancel() -> None:  # newest first: the two meet in the middle
        with sessions() as own:
            for job_id in reversed(ids):
                store.cancel_job(own, job_id, "changed my mind")

    _run_together([claim, cancel])
    assert len(claimed) == len(set(claimed))
    assert set(_states(session).values()) == {"cancelled"}
    for job_id in ids:  # claimed before the cancel came, or cancelled while queued
        path = [t.to_state for t in store.transitions_of(session, job_id)]
        assert path == (["created", "queued", "running", "cancelled"] if job_id in claimed
                        else ["created", "queued", "cancelled"]), job_id
    assert _moves_out_of_queued(session) == Counter(ids)


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)  # SQLite locks no rows
def test_a_claim_passes_over_rows_another_server_is_claiming(
        sessions: sessionmaker[Session], session: Session, tmp_path: Path) -> None:
    ids = queue_jobs(session, 4, tmp_path)
    with sessions() as first, sessions() as second:
        # The first server is between reading its rows and moving them.
        locked = first.scalars(select(JobRow.id).where(JobRow.state == "queued")
                               .order_by(JobRow.created_at, JobRow.id).limit(2)
                               .with_for_update(skip_locked=True)).all()
        assert list(locked) == ids[:2]
        second.execute(text("SET lock_timeout = '5s'"))  # waiting for them would fail
        taken = claims.claim_jobs(second, 2, server_id="second")
        assert [j.id for j in taken] == ids[2:]
        first.rollback()


def test_finish_many_succeeds_only_the_jobs_still_running(session: Session,
                                                          tmp_path: Path) -> None:
    queue_jobs(session, 2, tmp_path)
    running, cancelled = (j.id for j in claims.claim_jobs(session, 2, server_id="s"))
    store.transition(session, cancelled, JobState.cancelled, "stopped meanwhile")
    won = store.finish_many(session, {
        running: {"result": {"model_id": "sha256:a"}, "model_id": "sha256:a",
                  "git_commit": "abc"},
        cancelled: {"result": {"model_id": "sha256:b"}, "model_id": "sha256:b",
                    "git_commit": None}}, "trained")
    session.commit()
    assert list(won) == [running]
    # The rows returned are the jobs as the move left them, result included.
    assert (won[running].state, won[running].model_id, won[running].result) == (
        "succeeded", "sha256:a", {"model_id": "sha256:a"})
    row = store.read_job(session, running, fresh=True)
    assert (row.state, row.model_id, row.git_commit, row.result) == (
        "succeeded", "sha256:a", "abc", {"model_id": "sha256:a"})
    late = store.read_job(session, cancelled, fresh=True)
    assert (late.state, late.model_id, late.result) == ("cancelled", None, None)


def test_cancel_children_cancels_what_has_not_ended(session: Session, tmp_path: Path) -> None:
    (parent,) = queue_jobs(session, 1, tmp_path, kind="fleet")
    done, running, queued = queue_jobs(session, 3, tmp_path, kind="tenant", parent_id=parent,
                                       tenants=["a", "b", "c"])
    (other,) = queue_jobs(session, 1, tmp_path)
    force_state(session, done, JobState.succeeded)
    force_state(session, running, JobState.running)
    assert sorted(store.cancel_children(session, parent, "its fleet was cancelled")) == sorted(
        [running, queued])
    session.commit()
    states = _states(session)
    assert (states[done], states[running], states[queued], states[other]) == (
        "succeeded", "cancelled", "cancelled", "queued")
    assert store.transitions_of(session, queued)[-1].reason == "its fleet was cancelled"
    assert store.cancel_children(session, parent, "again") == []


def test_small_siblings_are_counted_and_claimed_within_rows(session: Session,
                                                            tmp_path: Path) -> None:
    (parent,) = queue_jobs(session, 1, tmp_path, kind="fleet")
    (elsewhere,) = queue_jobs(session, 1, tmp_path, kind="fleet")
    sizes: list[int | None] = [300_000, 15_000, 10_000, 1_000, 20_000, 5_000]
    ids = queue_jobs(session, len(sizes), tmp_path, kind="tenant", parent_id=parent, rows=sizes,
                     tenants=[f"t{i}" for i in range(len(sizes))])
    queue_jobs(session, 2, tmp_path, kind="tenant", parent_id=elsewhere, rows=[10, 10],
               tenants=["x", "y"])
    queue_jobs(session, 1, tmp_path, kind="global", parent_id=parent, rows=[10],
               tenants=["*"])
    big, a, b, tiny, c, d = ids
    assert claims.count_small_siblings(session, parent, 200_000) == 5
    assert claims.count_small_siblings(session, parent, 12_000) == 3

    # Oldest first while the rows fit: 15k + 10k + 1k = 26k; with 20k more they would not.
    taken = claims.claim_small_siblings(session, parent, 10, 200_000, server_id="s",
                                        rows_budget=30_000)
    assert [j.id for j in taken] == [a, b, tiny]
    assert all(j.state == "running" and j.current_step == "starting" for j in taken)
    assert store.transitions_of(session, a)[-1].reason == "packed with other small tenants"
    # The first always goes, even past the budget; the limit holds.
    assert [j.id for j in claims.claim_small_siblings(
        session, parent, 1, 200_000, server_id="s", rows_budget=100)] == [c]
    assert claims.claim_small_siblings(session, parent, 0, 200_000, server_id="s",
                                       rows_budget=100) == []
    assert [j.id for j in claims.claim_small_siblings(
        session, parent, 5, 200_000, server_id="s", rows_budget=100_000)] == [d]
    assert claims.count_small_siblings(session, parent, 200_000) == 0
    assert _states(session)[big] == "queued"


def test_claim_groups_packs_a_small_tenant_with_its_fleet_mates(session: Session,
                                                                tmp_path: Path) -> None:
    (parent,) = queue_jobs(session, 1, tmp_path, kind="fleet")
    force_state(session, parent, JobState.running)  # its plan runs elsewhere
    big, *small = queue_jobs(session, 12, tmp_path, kind="tenant", parent_id=parent,
                             rows=[packing.PACK_MAX_ROWS + 1] + [1_000] * 11,
                             tenants=[f"t{i}" for i in range(12)])
    groups = claims.claim_groups(session, 2, server_id="s", slots=2, packs=True)
    # The big tenant starts alone. The first small one brings pack-mates: an even share of the
    # 11 small ones over 2 slots is 6, below PACK_MIN_JOBS, so its pack holds 8.
    assert [[j.id for j in g] for g in groups] == [[big], small[:packing.PACK_MIN_JOBS]]
    rest = claims.claim_groups(session, 5, server_id="s", slots=2, packs=False)
    assert [[j.id for j in g] for g in rest] == [[j] for j in small[packing.PACK_MIN_JOBS:]]
