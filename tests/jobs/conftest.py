"""A real job store for the jobs tests that need no HTTP: a fresh database per test.

``engine`` is parametrized over the backends: a SQLite file always, a PostgreSQL database when
``MODELYARD_TEST_POSTGRES_URL`` is set (skipped otherwise, failed in CI: ``fresh_db_url``).
The schema is the migrations', as the server builds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from modelyard.jobs import store
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.request.loading import parse_request
from modelyard.sql import make_engine, session_factory, upgrade
from modelyard.synthetic import example_request
from tests.conftest import POSTGRES_URL, fresh_db_url


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = fresh_db_url(request.param, tmp_path)
    engine = make_engine(url)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        if request.param == "postgres":
            _drop_database(url)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as s:
        yield s


def _drop_database(url: str) -> None:
    import psycopg

    assert POSTGRES_URL is not None
    admin = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def request_json(**tenants: Any) -> dict[str, Any]:
    """The demo request as stored (``model_dump(mode="json")``); a fleet's with ``tenants``."""
    raw = example_request("payments.parquet")
    if tenants:
        raw["tenants"] = tenants
    return parse_request(raw).model_dump(mode="json")


def queue_jobs(session: Session, count: int, logs_dir: Path, *, kind: str = "train",
               parent_id: str | None = None, rows: list[int | None] | None = None,
               tenants: list[str] | None = None, fleet: dict[str, Any] | None = None,
               request: dict[str, Any] | None = None) -> list[str]:
    """Queue ``count`` jobs of one kind (committed), oldest first; returns their ids."""
    request = request or request_json()
    template = parse_request(request)
    jobs = [store.NewJob(request, kind, parent_id,
                         tenants[i] if tenants else None,
                         rows[i] if rows else None, fleet)
            for i in range(count)]
    ids = store.insert_jobs(session, template, jobs, executor="local",
                            logs_dir=logs_dir)
    session.commit()
    return ids


def force_state(session: Session, job_id: str, state: JobState) -> None:
    """Put a job in ``state`` directly (test set-up only: no audit row), committed."""
    session.execute(update(JobRow).where(JobRow.id == job_id).values(state=state.value)
                    .execution_options(synchronize_session=False))
    session.commit()
