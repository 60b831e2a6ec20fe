"""The job state machine on a real store: every allowed move works and is audited, every other
move raises Conflict and changes nothing, terminal states are final, and the batch form makes
the same moves as the single one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.errors import Conflict, NotFound
from modelyard.jobs import store
from modelyard.jobs.states import ALLOWED, TERMINAL, JobState, sources_of
from modelyard.jobs.tables import JobRow, TransitionRow
from modelyard.protocol.results import FailureKind, failure
from tests.jobs.conftest import force_state, queue_jobs

STATES = list(JobState)


def _audit(session: Session, job_id: str) -> list[tuple[str | None, str, str]]:
    return [(t.from_state, t.to_state, t.reason) for t in store.transitions_of(session, job_id)]


def _row(session: Session, job_id: str) -> JobRow:
    return store.read_job(session, job_id, fresh=True)


def test_the_table_has_the_documented_moves() -> None:
    assert {s: {t.value for t in ALLOWED[s]} for s in JobState} == {
        JobState.created: {"queued", "cancelled", "failed"},
        JobState.queued: {"running", "cancelled", "failed"},
        JobState.running: {"succeeded", "failed", "cancelled"},
        JobState.succeeded: set(), JobState.failed: set(), JobState.cancelled: set(),
    }
    assert TERMINAL == {s for s in JobState if not ALLOWED[s]}
    assert all(s.terminal == (s in TERMINAL) for s in JobState)
    assert sources_of(JobState.running) == {JobState.queued}
    assert sources_of(JobState.created) == frozenset()


def test_every_move_goes_forward_in_the_members_order() -> None:
    # move_jobs tries the sources in this order: a job moving meanwhile is met further on.
    for source, targets in ALLOWED.items():
        assert all(STATES.index(t) > STATES.index(source) for t in targets), source


@pytest.mark.parametrize("source", STATES, ids=[s.value for s in STATES])
def test_each_move_from_a_state_is_made_or_refused(session: Session, tmp_path: Path,
                                                   source: JobState) -> None:
    job_ids = queue_jobs(session, len(STATES), tmp_path)
    for job_id, target in zip(job_ids, STATES, strict=True):
        force_state(session, job_id, source)
        before = _audit(session, job_id)
        if target in ALLOWED[source]:
            store.transition(session, job_id, target, f"to {target.value}")
            session.commit()
            row = _row(session, job_id)
            assert row.state == target.value
            assert _audit(session, job_id) == [*before,
                                               (source.value, target.value, f"to {target.value}")]
            assert (row.finished_at is not None) == target.terminal
            assert (row.started_at is not None) == (target is JobState.running)
        else:
            message = f"job {job_id} is {source.value}; it cannot become {target.value}"
            with pytest.raises(Conflict, match=f"^{re.escape(message)}$"):
                store.transition(session, job_id, target, "refused")
            session.commit()
            assert _row(session, job_id).state == source.value
            assert _audit(session, job_id) == before


def test_terminal_states_are_final(session: Session, tmp_path: Path) -> None:
    (job_id,) = queue_jobs(session, 1, tmp_path)
    store.transition(session, job_id, JobState.cancelled, "by hand")
    session.commit()
    for target in STATES:
        with pytest.raises(Conflict, match=f"is cancelled; it cannot become {target.value}"):
            store.transition(session, job_id, target, "again")
    assert store.move_jobs(session, [job_id], JobState.failed, "again") == []
    session.commit()
    assert [to for _, to, _ in _audit(session, job_id)] == ["created", "queued", "cancelled"]


def test_a_move_of_an_unknown_job_raises_not_found(session: Session) -> None:
    with pytest.raises(NotFound, match="^no job 'nope'$"):
        store.transition(session, "nope", JobState.cancelled, "gone")
    assert store.move_jobs(session, ["nope"], JobState.cancelled, "gone") == []


def test_a_move_stamps_its_columns_and_the_failure(session: Session, tmp_path: Path) -> None:
    (job_id,) = queue_jobs(session, 1, tmp_path)
    store.transition(session, job_id, JobState.running, "claimed", server_id="s1",
                     current_step="starting")
    store.transition(session, job_id, JobState.failed, "it broke",
                     exception_info=failure(FailureKind.timeout, "too slow"))
    session.commit()
    row = _row(session, job_id)
    assert (row.state, row.server_id, row.current_step) == ("failed", "s1", None)
    assert row.started_at is not None and row.finished_at is not None
    assert row.finished_at >= row.started_at
    assert row.exception_info is not None
    assert (row.exception_info["kind"], row.exception_info["type"],
            row.exception_info["message"]) == ("timeout", "JobTimeout", "too slow")


def test_the_batch_form_moves_only_the_jobs_whose_state_allows_it(session: Session,
                                                                   tmp_path: Path) -> None:
    created, queued, running, done = queue_jobs(session, 4, tmp_path)
    force_state(session, created, JobState.created)
    force_state(session, running, JobState.running)
    force_state(session, done, JobState.succeeded)
    moved = store.move_jobs(session, [done, running, queued, created, running, "nope"],
                            JobState.cancelled, "stop everything")
    session.commit()
    assert moved == [running, queued, created]  # in the order given, each once
    states = {r.id: r.state for r in session.execute(select(JobRow.id, JobRow.state))}
    assert states == {created: "cancelled", queued: "cancelled", running: "cancelled",
                      done: "succeeded"}
    audit = [(r.job_id, r.from_state) for r in session.execute(
        select(TransitionRow.job_id, TransitionRow.from_state).where(
            TransitionRow.to_state == "cancelled"))]
    assert sorted(audit) == sorted([(created, "created"), (queued, "queued"),
                                    (running, "running")])


def test_nothing_moves_to_created(session: Session, tmp_path: Path) -> None:
    (job_id,) = queue_jobs(session, 1, tmp_path)
    force_state(session, job_id, JobState.created)
    assert store.move_jobs(session, [job_id], JobState.created, "again") == []
    with pytest.raises(Conflict, match="is created; it cannot become created"):
        store.transition(session, job_id, JobState.created, "again")


def test_the_reading_form_returns_the_rows_it_moved_as_the_move_left_them(
        session: Session, tmp_path: Path) -> None:
    queued, running, done = queue_jobs(session, 3, tmp_path)
    force_state(session, running, JobState.running)
    force_state(session, done, JobState.succeeded)
    stale = store.read_job(session, queued)  # held by the session before the move
    rows = store.move_and_read_jobs(session, [done, running, queued, "nope"], JobState.failed,
                                    "stop", current_step="gone")
    session.commit()
    assert list(rows) == [running, queued]  # in the order given; the ended job stays
    assert rows[queued] is stale and stale.state == "failed"
    assert {(r.state, r.current_step, r.finished_at is not None) for r in rows.values()} == {
        ("failed", "gone", True)}
    assert _row(session, done).state == "succeeded"
    assert _audit(session, queued)[-1] == ("queued", "failed", "stop")
