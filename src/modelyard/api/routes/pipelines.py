"""Pipelines: create or replace, list (with each one's last run, ``failing`` when it failed),
run, status with each step, logs, cancel, rerun."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from modelyard.api.deps import Services, Who, db_session, require_token, services
from modelyard.api.params import OptionalModelName
from modelyard.api.pipeline_schemas import (
    PipelineDetail,
    PipelineList,
    RunDetail,
    RunList,
    RunRequest,
    RunStarted,
    pipeline_summary,
    run_detail,
    run_summary,
)
from modelyard.api.redact import redactor_for
from modelyard.api.schemas import error_responses
from modelyard.errors import RequestError
from modelyard.jobs import store as jobs
from modelyard.pipelines import blocks, runs, store
from modelyard.pipelines.server_params import check_pipeline
from modelyard.pipelines.spec import PipelineSpec
from modelyard.pipelines.states import RunState
from modelyard.request.limits import MAX_NAME_CHARS

router = APIRouter(tags=["pipelines"], responses=error_responses(404, 422),
                   dependencies=[Depends(require_token)])

PipelineName = Annotated[str, Query(max_length=MAX_NAME_CHARS)]
RunId = Annotated[str, Query(max_length=64)]


@router.post("/pipelines", responses=error_responses(400))
def create_pipeline(spec: PipelineSpec, svc: Annotated[Services, Depends(services)],
                    session: Annotated[Session, Depends(db_session)], who: Who
                    ) -> PipelineDetail:
    """Create a pipeline, or replace the one of the same name (runs under way keep theirs)."""
    model = check_pipeline(spec, svc.settings)
    row = store.save_pipeline(session, spec, model_name=model, updated_by=who.name or None)
    last = store.last_runs(session, [row.name]).get(row.name)
    return PipelineDetail(**pipeline_summary(row, last, _shown(svc)).model_dump(), spec=row.spec)


@router.get("/pipelines")
def list_pipelines(session: Annotated[Session, Depends(db_session)],
                   svc: Annotated[Services, Depends(services)],
                   model: OptionalModelName = None) -> PipelineList:
    """Every pipeline (or those that train ``model``) with its last run; ``failing`` lists
    those whose last run failed."""
    rows = store.list_pipelines(session, model_name=model)
    last = store.last_runs(session, [r.name for r in rows])
    shown = _shown(svc)
    answers = [pipeline_summary(r, last.get(r.name), shown) for r in rows]
    return PipelineList(pipelines=answers, failing=[p.name for p in answers if p.failing])


@router.get("/pipelines/runs")
def list_runs(session: Annotated[Session, Depends(db_session)],
              svc: Annotated[Services, Depends(services)],
              pipeline: PipelineName | None = None, state: RunState | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> RunList:
    """Runs, newest first."""
    rows = store.list_runs(session, pipeline=pipeline, state=state.value if state else None,
                           limit=limit)
    shown = _shown(svc)
    return RunList(runs=[run_summary(r, shown) for r in rows])


@router.get("/pipelines/runs/{run_id}")
def show_run(run_id: str, session: Annotated[Session, Depends(db_session)],
             svc: Annotated[Services, Depends(services)]) -> RunDetail:
    """A run: its state, why it started, and each step's state, job, cache hit and outputs."""
    run = store.read_run(session, run_id)
    return run_detail(run, store.steps_of(session, run_id), _shown(svc))


@router.get("/pipelines/runs/{run_id}/logs", response_class=PlainTextResponse)
def run_logs(run_id: str, session: Annotated[Session, Depends(db_session)],
             svc: Annotated[Services, Depends(services)],
             step: Annotated[str | None, Query(max_length=64)] = None) -> PlainTextResponse:
    """Each step's log (its job's log file; a step the server ran: what it said), or one
    step's with ``step``. What a step said is a message, shown as the run's answer shows it;
    a job's log file is the job's own, as ``GET /jobs/{id}/logs`` shows it."""
    shown = _shown(svc)
    store.read_run(session, run_id)
    steps = store.steps_of(session, run_id)
    if step is not None:
        steps = [s for s in steps if s.name == step]
        if not steps:
            raise RequestError(f"step: run {run_id} has no step {step!r}")
    parts = []
    for s in steps:
        text = ""
        if s.job_id is not None:
            path = jobs.read_job(session, s.job_id).log_file
            if path and os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
        said = "\n".join(shown(x) for x in (s.summary, s.error) if x)
        body = text + (said + "\n" if said else "")
        parts.append(body if step is not None else f"== step {s.name} ({s.state}) ==\n{body}")
    return PlainTextResponse("".join(parts))


@router.get("/pipelines/{name}")
def show_pipeline(name: str, session: Annotated[Session, Depends(db_session)],
                  svc: Annotated[Services, Depends(services)]) -> PipelineDetail:
    row = store.read_pipeline(session, name)
    last = store.last_runs(session, [name]).get(name)
    return PipelineDetail(**pipeline_summary(row, last, _shown(svc)).model_dump(), spec=row.spec)


@router.post("/pipelines/{name}/runs", responses=error_responses(400, 409))
def start_run(name: str, body: RunRequest, svc: Annotated[Services, Depends(services)],
              session: Annotated[Session, Depends(db_session)], who: Who) -> RunStarted:
    """Start a run (409 while one of the same pipeline and tenant is queued or running)."""
    overrides = ({k: v.model_dump(exclude_none=True) for k, v in body.overrides.items()}
                 if body.overrides else None)
    for step, override in (body.overrides or {}).items():
        try:  # what a run may swap in, the operator must have allowed, as at create time
            blocks.check_image(override.image, svc.settings)
            if override.command is not None:
                blocks.check_command(override.command, svc.settings)
        except RequestError as exc:
            raise RequestError(f"overrides.{step}.{exc}") from None
    run = runs.start_run(session, name, tenant=body.tenant, overrides=overrides,
                         reason={"by": who.name or None, "why": "started through the API"},
                         started_by=who.name or None)
    svc.wake_pipelines()
    return RunStarted(run_id=run.id, pipeline=name)


@router.post("/pipelines/runs/{run_id}/cancel", responses=error_responses(409))
def cancel_run(run_id: str, svc: Annotated[Services, Depends(services)],
               session: Annotated[Session, Depends(db_session)], who: Who) -> RunDetail:
    by = f" by {who.name}" if who.authenticated else ""
    if runs.cancel_run(session, run_id, f"cancelled through the API{by}"):
        svc.wake_dispatcher(cancelled=True)
    return run_detail(store.read_run(session, run_id), store.steps_of(session, run_id),
                      _shown(svc))


@router.post("/pipelines/runs/{run_id}/rerun", responses=error_responses(409))
def rerun(run_id: str, svc: Annotated[Services, Depends(services)],
          session: Annotated[Session, Depends(db_session)], who: Who,
          from_step: Annotated[str | None, Query(max_length=64)] = None) -> RunStarted:
    """A new run: with ``from_step``, the steps upstream of it reuse this run's outputs and
    it and everything downstream run again; without, the cache decides what runs."""
    run = runs.rerun(session, run_id, from_step=from_step, started_by=who.name or None)
    svc.wake_pipelines()
    return RunStarted(run_id=run.id, pipeline=run.pipeline_name)



def _shown(svc: Services) -> Callable[[str], str]:
    """Messages as answers show them: the server's own paths hidden unless --debug."""
    return redactor_for(svc.settings).text
