"""Pipeline steps in the job store: a step is a job of kind ``step``, queued at once.

The job's ``request`` column holds the :class:`~modelyard.protocol.steps.StepJob` itself, so the
dispatcher claims, times out, cancels and logs a step job like a train job, and hands the step
to the worker in :attr:`~modelyard.protocol.events.WorkerSpec.step`
(:mod:`~modelyard.jobs.worker_specs`). When it succeeds its ``result`` holds the
:class:`~modelyard.protocol.steps.StepResult` and no model is registered
(:mod:`~modelyard.jobs.recording`).
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from modelyard.errors import NotFound
from modelyard.jobs import store
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow, TransitionRow
from modelyard.protocol.steps import StepJob, StepResult
from modelyard.registry.stages import GLOBAL_TENANT
from modelyard.registry.versions import read_version
from modelyard.request.models import request_hash
from modelyard.sql.base import table_of

STEP_KIND = "step"


def create_step_job(session: Session, step: StepJob, *, pipeline: str, executor: str,
                    logs_dir: Path, submitted_by: str | None,
                    timeout_seconds: float | None = None, commit: bool = True) -> JobRow:
    """Store a job that runs ``step`` of a run of ``pipeline``, and queue it (created ->
    queued, in one transaction).

    The job's ``model_name`` is the pipeline's name and its ``workflow_name`` ``step:<type>``,
    so listing jobs by model name finds a pipeline's steps. ``timeout_seconds``: the step's
    own limit (else the server's ``--job-timeout``). An ``evaluate`` step that names a
    registered version (``model_name``, ``version``, ``tenant``) gets where its model is in
    ``inputs["model"]``: the worker cannot read the registry.

    Raises:
        NotFound: the version an evaluate step names is not registered.
    """
    at = store.now()
    job_id = uuid.uuid4().hex
    request = _with_model(session, step).to_json()
    row: dict[str, Any] = {
        "id": job_id, "state": JobState.queued.value, "request": request,
        "request_hash": request_hash(request), "model_name": pipeline, "owner": "",
        "project": "", "trainer": "", "workflow_name": f"step:{step.type}",
        "compute_resource": "cpu", "executor": executor, "timeout_seconds": timeout_seconds,
        "created_at": at, "updated_at": at, "log_file": str(logs_dir / f"{job_id}.log"),
        "kind": STEP_KIND, "submitted_by": submitted_by,
    }
    session.execute(insert(table_of(JobRow)), [row])
    session.execute(insert(table_of(TransitionRow)), [
        {"job_id": job_id, "from_state": None, "to_state": JobState.created.value, "at": at,
         "reason": f"step {step.step!r} of pipeline run {step.run_id}"},
        {"job_id": job_id, "from_state": JobState.created.value,
         "to_state": JobState.queued.value, "at": at, "reason": "waiting for a worker slot"},
    ])
    if commit:
        session.commit()
    return store.read_job(session, job_id)


def _with_model(session: Session, step: StepJob) -> StepJob:
    name, version = step.params.get("model_name"), step.params.get("version")
    if step.type != "evaluate" or name is None or version is None:
        return step
    row = read_version(session, str(name), int(version),
                       str(step.params.get("tenant") or GLOBAL_TENANT))
    if row.job_id is None:
        raise NotFound(f"version {row.version} of {row.model_name!r} was registered without a "
                       "training job, so there is no request to score it with; evaluate "
                       "another version")
    model = {"model_id": row.model_id, "job_id": row.job_id, "model_name": row.model_name,
             "version": row.version, "tenant": row.tenant}
    return dataclasses.replace(step, inputs={**step.inputs, "model": model})


def step_of(job: JobRow) -> StepJob | None:
    """The step a job runs (None: not a step job)."""
    return StepJob.from_json(job.request) if job.kind == STEP_KIND else None


def step_result(job: JobRow) -> StepResult | None:
    """A succeeded step job's result (None: not a step job, or it has not succeeded)."""
    if job.kind != STEP_KIND or job.state != JobState.succeeded.value or not job.result:
        return None
    return StepResult.from_json(job.result)
