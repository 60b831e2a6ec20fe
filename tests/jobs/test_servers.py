"""Servers' leases in the job store: a server whose lease ran out is taken over once, its running
jobs fail naming it, a fleet waiting on its children is left to finish, and SQLite refuses a
second live server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from modelyard.errors import ConfigurationError
from modelyard.jobs import recovery, servers, store
from modelyard.jobs.claims import claim_jobs
from modelyard.jobs.servers import ServerIdentity
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow, ServerRow
from modelyard.sql import make_engine, session_factory, upgrade
from tests.jobs.conftest import queue_jobs


def _server(name: str, pid: int = 1) -> ServerIdentity:
    return ServerIdentity(f"elsewhere/{pid}/{name}", "elsewhere", pid)


def _expire(session: Session, server_id: str) -> None:
    """Test set-up: the server's lease ran out a minute ago."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    session.execute(update(ServerRow).where(ServerRow.id == server_id)
                    .values(lease_expires_at=past, renewed_at=past))
    session.commit()


def test_an_expired_server_is_taken_over_once_and_its_running_jobs_fail_naming_it(
        session: Session, tmp_path: Path) -> None:
    dead, alive, other = _server("dead"), _server("alive", 2), _server("other", 3)
    for me in (dead, alive, other):
        servers.register_server(session, me, 30, single=False, store="the test store")
    (running,) = queue_jobs(session, 1, tmp_path)
    (waiting,) = queue_jobs(session, 1, tmp_path, kind="fleet")  # a planned fleet's parent
    assert [j.id for j in claim_jobs(session, 2, server_id=dead.id)] == [running, waiting]
    store.transition_fields(session, waiting, current_step="children")
    session.commit()
    (queued,) = queue_jobs(session, 1, tmp_path)
    assert recovery.take_over_expired(session, alive.id) == []  # every lease runs

    _expire(session, dead.id)
    assert recovery.take_over_expired(session, alive.id) == [running]
    session.commit()
    assert recovery.take_over_expired(session, other.id) == []  # once: it is alive's already
    job = store.read_job(session, running, fresh=True)
    assert job.state == JobState.failed.value
    assert job.exception_info is not None and job.exception_info["kind"] == "worker_lost"
    assert [t.to_state for t in store.transitions_of(session, running)] == [
        "created", "queued", "running", "failed"]
    assert store.transitions_of(session, running)[-1].reason.startswith(
        f"server {dead.id} on host elsewhere stopped renewing its lease at ")
    assert store.read_job(session, queued).state == JobState.queued.value  # nobody's
    assert store.read_job(session, waiting, fresh=True).state == JobState.running.value
    # The dead server, were it only slow, learns it was taken over when it renews.
    assert not servers.renew_lease(session, dead.id, 30)
    assert servers.renew_lease(session, alive.id, 30)


def test_a_server_stopped_cleanly_is_taken_over_without_waiting_for_its_lease(
        session: Session, tmp_path: Path) -> None:
    stopped, alive = _server("stopped"), _server("alive", 2)
    for me in (stopped, alive):
        servers.register_server(session, me, 3600, single=False, store="the test store")
    (job,) = queue_jobs(session, 1, tmp_path)
    claim_jobs(session, 1, server_id=stopped.id)
    servers.end_lease(session, stopped.id)
    assert recovery.take_over_expired(session, alive.id) == [job]
    assert store.transitions_of(session, job)[-1].reason.startswith(
        f"server {stopped.id} on host elsewhere stopped at ")


def test_sqlite_refuses_a_second_live_server(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    upgrade(engine)
    with session_factory(engine)() as session:
        _one_server_at_a_time(session)
    engine.dispose()


def _one_server_at_a_time(session: Session) -> None:
    first = _server("first")
    servers.register_server(session, first, 30, single=True, store="sqlite:///x.db")
    with pytest.raises(ConfigurationError, match=(
            rf"another modelyard server \({first.id}\) runs on the job store sqlite:///x.db, "
            r"and SQLite holds one server at a time \(its lease runs until .* UTC\); stop that "
            r"server .* or use PostgreSQL for several servers")):
        servers.register_server(session, _server("second", 2), 30, single=True,
                                store="sqlite:///x.db")
    assert session.get(ServerRow, _server("second", 2).id) is None
    servers.end_lease(session, first.id)
    servers.register_server(session, _server("second", 2), 30, single=True,
                            store="sqlite:///x.db")
    assert session.query(JobRow).count() == 0
