"""Response models of the HTTP API, separate from table rows (Railyard's answer shapes)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from modelyard.jobs.listing import main_metric
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow, StepRow, TransitionRow
from modelyard.jsonbody import inline_schema


class TrainResponse(BaseModel):
    job_id: str


class Transition(BaseModel):
    created_at: dt.datetime
    job_state: JobState
    reason: str = ""


class Step(BaseModel):
    name: str
    started_at: dt.datetime
    duration_s: float | None
    info: dict[str, Any] | None = None


class JobStatus(BaseModel):
    job_id: str
    log_file: str | None
    transition: Transition
    transitions: list[Transition]
    git_commit: str | None
    current_step: str | None
    steps: list[Step]
    model_name: str
    owner: str
    project: str
    trainer: str
    workflow_name: str
    compute_resource: str
    executor: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    elapsed_s: float
    worker_host: str | None
    worker_pid: int | None
    server_id: str | None = Field(None, description="the server that claimed and runs (or "
                                  "ran) the job: host/pid/nonce")
    kind: str
    parent_id: str | None
    tenant: str | None
    replay_of: str | None = Field(None, description="a replay: the job whose request it runs "
                                  "again (GET /jobs/{id}/replay compares them)")


class StatusResponse(BaseModel):
    status: JobStatus


class JobResult(BaseModel):
    evaluation_holdout_data_path: str
    evaluation_holdout_label_path: str
    model_id: str
    metrics: dict[str, Any]
    metrics_path: str | None = None
    provenance_path: str | None = None
    profile_path: str | None = Field(None, description="the version's reference profile, "
                                     "monitoring's baseline (trained before it existed: null)")
    row_counts: dict[str, int] = {}


class ExceptionRecord(BaseModel):
    """Why a job failed (:class:`modelyard.protocol.results.ExceptionInfo` as the API shows
    it): the failure's kind, the exception's type and message, the step it happened in."""

    kind: str | None = None
    type: str
    message: str
    step: str | None = None
    traceback: str | None = Field(None, description="only from a server started with --debug "
                                                    "(it is in the job's log)")
    exitcode: int | None = None


class ResultResponse(BaseModel):
    status: JobStatus
    result: JobResult | None
    exception_info: ExceptionRecord | None


class MainMetric(BaseModel):
    """A job's headline number: its task's metric (roc_auc, accuracy, rmse)."""

    name: str
    value: float
    higher_is_better: bool


class JobSummary(BaseModel):
    job_id: str
    state: JobState
    model_name: str
    owner: str
    project: str
    workflow_name: str
    current_step: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None
    duration_s: float | None = Field(None, description="from its start to its end (or now); "
                                     "null until a worker started it")
    main_metric: MainMetric | None = Field(None, description="null until it succeeded")
    model_id: str | None
    error: str | None
    kind: str
    parent_id: str | None
    tenant: str | None
    submitted_by: str | None = None  # the token identity; None if the server had no tokens


class JobList(BaseModel):
    jobs: list[JobSummary]
    total: int
    limit: int
    offset: int


class JobDetail(ResultResponse):
    request: dict[str, Any]


class ReplayStarted(BaseModel):
    job_id: str = Field(description="the replay, a new job")
    replay_of: str


class ReplayChange(BaseModel):
    """A package (or ``python``) by version, or a data file by size, mtime and rows."""

    name: str
    original: str | None
    replay: str | None


class ReplayComparison(BaseModel):
    """A replay against its original (:class:`modelyard.jobs.replay.Comparison`)."""

    replay_job_id: str
    original_job_id: str
    state: JobState = Field(description="the replay's")
    verdict: Literal["pending", "failed", "reproduced", "differs"]
    explanation: str
    original_model_id: str | None
    replay_model_id: str | None
    same_model: bool | None = Field(description="the models' sha256 match (null until the "
                                    "replay succeeded)")
    reasons: list[Literal["data_changed", "packages_differ", "workflow_code_differs",
                          "not_deterministic"]]
    original_data_digest: str | None
    replay_data_digest: str | None
    data_files: list[ReplayChange] = Field(description="data files added, removed or "
                                           "rewritten (the first 20)")
    packages: list[ReplayChange]
    original_workflow_sha256: str | None
    replay_workflow_sha256: str | None


class DegradedServing(BaseModel):
    """A (model, tenant) whose production version cannot be loaded."""

    model_name: str
    tenant: str
    wanted_version: int
    serving_version: int | None = Field(description="what answers instead (null: nothing, "
                                        "predict answers 503)")
    reason: str
    since: dt.datetime


class Health(BaseModel):
    status: str
    version: str
    executor: str
    concurrency: int
    active_jobs: int
    server_id: str | None = Field(None, description="this server's id (host/pid/nonce); none "
                                  "for a serving replica")
    degraded: list[DegradedServing] = Field(
        default_factory=list, description="production versions serving cannot load")


class Readiness(BaseModel):
    status: str = Field(description="ready (200), starting or draining (503)")


def status_of(job: JobRow, transitions: list[TransitionRow], steps: list[StepRow], *,
              redact: Callable[[str], str]) -> JobStatus:
    """The job's status; ``redact`` rewrites the transitions' reasons (they quote errors) for
    the client (:mod:`modelyard.api.redact`)."""
    moves = [Transition(created_at=t.at, job_state=JobState(t.to_state), reason=redact(t.reason))
             for t in transitions]
    end = job.finished_at or dt.datetime.now(dt.UTC)
    return JobStatus(
        job_id=job.id,
        log_file=job.log_file,
        transition=moves[-1],
        transitions=moves,
        git_commit=job.git_commit,
        current_step=job.current_step,
        steps=[Step(name=s.name, started_at=s.started_at, duration_s=s.duration_s, info=s.info)
               for s in steps],
        model_name=job.model_name,
        owner=job.owner,
        project=job.project,
        trainer=job.trainer,
        workflow_name=job.workflow_name,
        compute_resource=job.compute_resource,
        executor=job.executor,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        elapsed_s=round((end - job.created_at).total_seconds(), 3),
        worker_host=job.worker_host,
        worker_pid=job.worker_pid,
        server_id=job.server_id,
        kind=job.kind,
        parent_id=job.parent_id,
        tenant=job.tenant,
        replay_of=job.replay_of,
    )


def result_of(job: JobRow) -> JobResult | None:
    if job.state != JobState.succeeded.value or not job.result or "model_id" not in job.result:
        return None  # not done, or a fleet parent (its models are its children's results)
    r = job.result
    return JobResult(
        evaluation_holdout_data_path=r["evaluation_holdout_data_path"],
        evaluation_holdout_label_path=r["evaluation_holdout_label_path"],
        model_id=r["model_id"],
        metrics=r["metrics"],
        metrics_path=r.get("metrics_path"),
        provenance_path=r.get("provenance_path"),
        profile_path=r.get("profile_path"),
        row_counts=r.get("row_counts", {}),
    )


def summary_of(job: JobRow, *, redact: Callable[[str], str]) -> JobSummary:
    info = job.exception_info or {}
    metric = main_metric(job.result)
    duration = None
    if job.started_at is not None:
        end = job.finished_at or dt.datetime.now(dt.UTC)
        duration = round((end - job.started_at).total_seconds(), 3)
    return JobSummary(
        job_id=job.id,
        state=JobState(job.state),
        model_name=job.model_name,
        owner=job.owner,
        project=job.project,
        workflow_name=job.workflow_name,
        current_step=job.current_step,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        duration_s=duration,
        main_metric=MainMetric(**dataclasses.asdict(metric)) if metric else None,
        model_id=job.model_id,
        error=redact(str(info["message"])) if info.get("message") is not None else None,
        kind=job.kind,
        parent_id=job.parent_id,
        tenant=job.tenant,
        submitted_by=job.submitted_by,
    )


class ErrorBody(BaseModel):
    """A refusal: the error's class in :mod:`modelyard.errors` and what to do about it."""

    error: str
    message: str


class Problem(BaseModel):
    """One problem of a request: where (``["query", "offset"]``), what, and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class InvalidRequest(ErrorBody):
    """A 422: the first problems, each naming its parameter or field, and how many more."""

    detail: list[Problem] = []
    more_errors: int = 0


class UnreadableBody(BaseModel):
    """A 400 from FastAPI: the body is not text it can parse (not UTF-8)."""

    detail: str


_ERRORS: dict[int, tuple[type[BaseModel], str]] = {
    400: (UnreadableBody, "The body cannot be parsed (not UTF-8 JSON)"),
    404: (ErrorBody, "No such job, model, version or artefact"),
    409: (ErrorBody, "Not allowed in the current state (the message says why)"),
    413: (ErrorBody, "The body is over the server's limit"),
    422: (InvalidRequest, "Not a valid request: each problem names its parameter or field"),
    503: (ErrorBody, "The model cannot be loaded, and no earlier one answers instead"),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: the error answers it may give, with their JSON
    bodies, also on a route whose own answer is not JSON (the job's log). (401 and 403 for
    tokens and roles are documented for every route by
    :func:`modelyard.api.auth.document_auth`.)"""
    return {status: {"description": _ERRORS[status][1], "content": {
        "application/json": {"schema": inline_schema(_ERRORS[status][0])}}}
        for status in statuses}
