"""What workers report, written into the job store: steps, workers, and successes.

The dispatcher applies worker events in batches, one transaction each; these functions turn a
batch into few statements whatever its size: a fleet's packed tenants report a dozen events each
within milliseconds, and a statement per event would make the server's CPU the fleet's
bottleneck. Failures and a fleet's plan go through :func:`~modelyard.jobs.store.transition` and
:mod:`modelyard.jobs.fleet` instead, one job at a time: they are few.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from modelyard.jobs import store
from modelyard.jobs.tables import JobRow
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    StepFinished,
    StepStarted,
    WorkerEvent,
    WorkerStarted,
)
from modelyard.protocol.results import JobResult
from modelyard.protocol.steps import StepResult
from modelyard.registry import store as registry_store
from modelyard.registry.stages import GLOBAL_TENANT
from modelyard.registry.store import Registered

SUCCEEDED = "the workflow trained and was evaluated"
STEP_SUCCEEDED = "the pipeline step ran"


def record_progress(session: Session, events: Sequence[WorkerEvent]) -> None:
    """Store the steps and workers a batch of events reports (does not commit).

    Steps are coalesced: every finished step goes in with one INSERT, and only a job's latest
    started step is written as its current step (none once the job ended in the same batch).
    """
    ended = {e.job_id for e in events if isinstance(e, JobFinished | JobErrored)}
    finished: list[dict[str, Any]] = []
    current: dict[str, str] = {}
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


def succeed_jobs(session: Session, results: dict[str, JobResult]
                 ) -> list[tuple[JobRow, Registered | None]]:
    """Mark running jobs succeeded with their results and register their models, in a few
    statements for the whole batch (does not commit).

    A job cancelled or timed out meanwhile keeps that outcome and registers nothing; a replay
    registers nothing either (it checks a model, it does not offer one: see
    :mod:`modelyard.jobs.replay`). Returns ``(job row, registered version or None)`` of the
    jobs that succeeded.
    """
    if not results:
        return []
    jobs = store.finish_many(session, {
        job_id: {"result": r.to_json(), "model_id": r.model_id, "git_commit": r.git_commit}
        for job_id, r in results.items()}, SUCCEEDED)
    registering = [job_id for job_id, job in jobs.items() if job.replay_of is None]
    versions = dict(zip(registering, registry_store.register_versions(
        session, [_version_of(jobs[job_id], results[job_id]) for job_id in registering]),
        strict=True))
    return [(job, versions.get(job_id)) for job_id, job in jobs.items()]


def succeed_steps(session: Session, results: dict[str, StepResult]) -> list[str]:
    """Mark running pipeline step jobs succeeded with their results (does not commit); they
    register nothing. Returns the ids that succeeded (not those cancelled or timed out
    meanwhile)."""
    if not results:
        return []
    return list(store.finish_many(session, {job_id: {"result": r.to_json()}
                                            for job_id, r in results.items()},
                                  STEP_SUCCEEDED))


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
        "evidence": result.evidence,
        "fleet_child": job.parent_id is not None,
    }


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, str | int | float | bool | None) else str(v))
            for k, v in info.items()}
