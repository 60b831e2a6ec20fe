"""Jobs: list, status, result, logs, cancel; ``/job/{id}/...`` (Railyard) and ``/jobs/{id}/...``.

``status`` and ``result`` take ``?wait=SECONDS``: the answer comes as soon as the job changes
(a state or a step) or ends, or when the time is up, so clients follow a job without busy polling;
``&until=done`` answers only when it ends.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import Services, Who, db_session, require_token, services
from modelyard.api.notify import wait_for
from modelyard.api.params import INT64_MAX, Offset, OptionalModelName, TenantValue
from modelyard.api.plot_schemas import JobPlots, plots_of
from modelyard.api.redact import Redactor, redactor_for
from modelyard.api.schemas import (
    JobDetail,
    JobList,
    ReplayComparison,
    ReplayStarted,
    ResultResponse,
    StatusResponse,
    error_responses,
    result_of,
    status_of,
    summary_of,
)
from modelyard.artifacts import ArtifactStore
from modelyard.errors import Conflict
from modelyard.jobs import fleet, listing, plots, replay, store
from modelyard.jobs.fleet_view import PAGE_SIZE, FleetView, Level, fleet_view
from modelyard.jobs.joblog import JobLog
from modelyard.jobs.states import JobState
from modelyard.request.limits import MAX_LABEL_CHARS, MAX_TENANTS

router = APIRouter(tags=["jobs"], responses=error_responses(404, 422),
                   dependencies=[Depends(require_token)])

Wait = Annotated[float, Query(ge=0, le=300, description="long-poll up to this many seconds")]
Until = Annotated[Literal["change", "done"], Query(
    description="with wait: answer at the job's next change (a step or a state), or only when "
                "it ends")]


def _read_result(svc: Services, job_id: str) -> ResultResponse:
    with svc.sessions() as session:
        return _answer(session, job_id, redactor_for(svc.settings))


def _answer(session: Session, job_id: str, shown: Redactor) -> ResultResponse:
    job, transitions, steps = store.snapshot_job(session, job_id)
    status = status_of(job, transitions, steps, redact=shown.text)
    return ResultResponse(status=status, result=result_of(job),
                          exception_info=shown.exception_info(job.exception_info))


def _read_if_ended(svc: Services, job_id: str) -> ResultResponse | None:
    """The full answer if the job has ended (or does not exist: the read says so); else None,
    having read only its state (a long-poll looks often, and a fleet's row is big)."""
    with svc.sessions() as session:
        state = store.states_of(session, [job_id]).get(job_id)
        if state is not None and not JobState(state).terminal:
            return None
        return _answer(session, job_id, redactor_for(svc.settings))


async def _wait_and_read(svc: Services, job_id: str, wait: float,
                         until: str = "change") -> ResultResponse:
    if wait <= 0:
        return await run_in_threadpool(_read_result, svc, job_id)
    deadline = time.monotonic() + wait
    # Watch before looking, so no change after this point is missed. Until the job ends only
    # its state is read: the full answer once, at the end (each read is a hop to a thread).
    with svc.notifier.watch(job_id, only_end=until == "done") as changed:
        answer = await run_in_threadpool(_read_if_ended, svc, job_id)
        while answer is None:
            left = deadline - time.monotonic()
            if left <= 0 or not await wait_for(changed, left):
                break
            changed.clear()
            if until == "change":
                break
            answer = await run_in_threadpool(_read_if_ended, svc, job_id)
    if answer is None:
        answer = await run_in_threadpool(_read_result, svc, job_id)
    return answer


@router.get("/jobs")
def list_jobs(
    session: Annotated[Session, Depends(db_session)],
    svc: Annotated[Services, Depends(services)],
    state: JobState | None = None,
    owner: Annotated[str | None, Query(max_length=MAX_LABEL_CHARS)] = None,
    project: Annotated[str | None, Query(max_length=MAX_LABEL_CHARS)] = None,
    model_name: OptionalModelName = None,
    parent_id: Annotated[str | None, Query(max_length=64)] = None,
    search: Annotated[str | None, Query(max_length=MAX_LABEL_CHARS, description=(
        "the start of a job's id, or part of its model's or project's name"))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Offset = 0,
) -> JobList:
    """Jobs, newest first; a fleet's children only with ``parent_id``."""
    where = listing.JobFilter(state=state, owner=owner, project=project, model_name=model_name,
                              parent_id=parent_id, search=search)
    rows, total = listing.list_jobs(session, where, limit=limit, offset=offset)
    shown = redactor_for(svc.settings)
    return JobList(jobs=[summary_of(j, redact=shown.text) for j in rows], total=total,
                   limit=limit, offset=offset)


@router.get("/jobs/{job_id}")
def show_job(job_id: str, svc: Annotated[Services, Depends(services)]) -> JobDetail:
    answer = _read_result(svc, job_id)
    with svc.sessions() as session:
        request = store.read_job(session, job_id).request
    return JobDetail(**answer.model_dump(), request=request)


@router.get("/job/{job_id}/status")
@router.get("/jobs/{job_id}/status")
async def job_status(
    job_id: str, svc: Annotated[Services, Depends(services)], wait: Wait = 0,
    until: Until = "change",
) -> StatusResponse:
    answer = await _wait_and_read(svc, job_id, wait, until)
    return StatusResponse(status=answer.status)


@router.get("/job/{job_id}/result")
@router.get("/jobs/{job_id}/result")
async def job_result(
    job_id: str, svc: Annotated[Services, Depends(services)], wait: Wait = 0,
    until: Until = "change",
) -> ResultResponse:
    return await _wait_and_read(svc, job_id, wait, until)


@router.get("/job/{job_id}/logs", response_class=PlainTextResponse)
@router.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
def job_logs(
    job_id: str,
    session: Annotated[Session, Depends(db_session)],
    offset: Annotated[int, Query(ge=0, le=INT64_MAX,
                                 description="byte offset to read from (for tailing)")] = 0,
) -> PlainTextResponse:
    text, end = JobLog(store.read_job(session, job_id).log_file).read(offset)
    return PlainTextResponse(text, headers={"X-Log-Offset": str(end)})


@router.get("/jobs/{job_id}/plots", responses=error_responses(409))
def job_plots(job_id: str, svc: Annotated[Services, Depends(services)],
              session: Annotated[Session, Depends(db_session)]) -> JobPlots:
    """A succeeded job's evaluation plots, from its holdout scores: ROC, precision-recall,
    calibration and score histograms by class (binary); the mean prediction against the actual
    value and the residuals (regression); the confusion matrix (multi-class). 409 before it
    succeeded."""
    job = store.read_job(session, job_id)
    return plots_of(plots.job_plots(ArtifactStore(svc.settings.artifact_root), job))


@router.post("/job/{job_id}/cancel", responses=error_responses(409))
@router.post("/jobs/{job_id}/cancel", responses=error_responses(409))
def cancel_job(
    job_id: str,
    svc: Annotated[Services, Depends(services)],
    session: Annotated[Session, Depends(db_session)],
    who: Who,
) -> StatusResponse:
    by = f" by {who.name}" if who.authenticated else ""
    store.cancel_job(session, job_id, f"cancelled through the API{by}")
    svc.wake_dispatcher(cancelled=True)
    svc.notifier.notify(job_id)
    return StatusResponse(status=status_of(*store.snapshot_job(session, job_id),
                                           redact=redactor_for(svc.settings).text))


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenants: list[TenantValue] | None = Field(None, max_length=MAX_TENANTS)


@router.get("/jobs/{job_id}/fleet", responses=error_responses(409))
def fleet_status(job_id: str, session: Annotated[Session, Depends(db_session)]
                 ) -> dict[str, Any]:
    """A fleet's progress: counts by state (and skipped tenants) and one line per tenant with
    its metrics, the level that serves it and why."""
    job = store.read_job(session, job_id)
    if job.kind != "fleet":
        raise Conflict(f"job {job_id} is a {job.kind} job, not a fleet")
    return fleet.fleet_summary(session, job)


@router.get("/jobs/{job_id}/fleet/tenants", responses=error_responses(409))
def fleet_tenants(job_id: str, session: Annotated[Session, Depends(db_session)],
                  svc: Annotated[Services, Depends(services)], offset: Offset = 0,
                  limit: Annotated[int, Query(ge=1, le=1000)] = PAGE_SIZE,
                  failed: Annotated[bool, Query(description="only tenants whose job failed")
                                    ] = False,
                  level: Annotated[Level | None, Query(description="only tenants served at "
                                                       "this level")] = None,
                  q: Annotated[str | None, Query(max_length=MAX_LABEL_CHARS, description=(
                      "only tenants whose name contains this"))] = None) -> FleetView:
    """A page of a fleet's tenants: the level that serves each, its metric against its
    fallback's and production's, its production version and why it failed; with counts by
    state and by level."""
    view = fleet_view(session, job_id, offset=offset, limit=limit, failed_only=failed,
                      level=level, search=q)
    shown = redactor_for(svc.settings).text
    return dataclasses.replace(view, lines=[
        dataclasses.replace(x, failure=shown(x.failure)) if x.failure else x
        for x in view.lines])


@router.post("/jobs/{job_id}/retry", responses=error_responses(400, 409))
def retry_fleet(job_id: str, body: RetryRequest, svc: Annotated[Services, Depends(services)],
                session: Annotated[Session, Depends(db_session)]) -> dict[str, Any]:
    """Retrain a subset of a finished fleet's tenants (default: those that did not succeed)."""
    created = fleet.retry_children(session, job_id, body.tenants)
    svc.wake_dispatcher()
    return {"job_ids": [job_id for job_id, _ in created],
            "tenants": [tenant for _, tenant in created]}



@router.post("/jobs/{job_id}/replay", responses=error_responses(409))
def replay_job(job_id: str, svc: Annotated[Services, Depends(services)],
               session: Annotated[Session, Depends(db_session)], who: Who) -> ReplayStarted:
    """Run a succeeded train job's request again as a new job (its model is not registered);
    ``GET /jobs/{new id}/replay`` then says whether it trained the same model, and if not why."""
    job = replay.replay_job(session, job_id, executor=svc.settings.executor,
                            logs_dir=svc.settings.logs_dir, submitted_by=who.name or None)
    svc.wake_dispatcher()
    return ReplayStarted(job_id=job.id, replay_of=job_id)


@router.get("/jobs/{job_id}/replay", responses=error_responses(409))
def replay_comparison(job_id: str, svc: Annotated[Services, Depends(services)],
                      session: Annotated[Session, Depends(db_session)]) -> ReplayComparison:
    """A replay against its original: the verdict (``pending`` until it ends), whether the
    model's sha256 matches, and what differs (data fingerprint, packages, workflow code)."""
    compared = replay.compare(session, ArtifactStore(svc.settings.artifact_root), job_id)
    answer = ReplayComparison.model_validate(dataclasses.asdict(compared))
    shown = redactor_for(svc.settings)  # a failed replay's error, the data files' paths
    answer.explanation = shown.text(answer.explanation)
    for change in answer.data_files:
        change.name = shown.text(change.name)
    return answer
