"""``/ui/pipelines`` and ``/ui/pipelines/{name}``: pipelines, their triggers and their runs,
each run's steps in the order the DAG runs them.

The pages call the JSON routes' own functions (``GET /pipelines``, ``/pipelines/{name}``,
``/pipelines/{name}/triggers``, ``/pipelines/runs``, ``/pipelines/runs/{id}``), so they show
exactly what the API answers; ``Run now`` goes through ``POST /pipelines/{name}/runs``' function.
"""

from __future__ import annotations

from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from modelyard.api.deps import Services, Who, db_session, services
from modelyard.api.pipeline_schemas import RunRequest
from modelyard.api.routes import pipelines as api
from modelyard.api.routes import triggers as trigger_api
from modelyard.pipelines.spec import PipelineSpec
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)
RUNS_SHOWN = 20


@router.get("/ui/pipelines")
def pipelines_page(request: Request, session: Annotated[Session, Depends(db_session)],
                   svc: Annotated[Services, Depends(services)]) -> HTMLResponse:
    listing = api.list_pipelines(session, svc)
    return render(request, "pipelines.html", listing=listing)


@router.get("/ui/pipelines/{name}")
def pipeline_page(name: str, request: Request, session: Annotated[Session, Depends(db_session)],
                  svc: Annotated[Services, Depends(services)]) -> HTMLResponse:
    detail = api.show_pipeline(name, session, svc)
    triggers = trigger_api.pipeline_triggers(name, session, svc)
    recent = api.list_runs(session, svc, pipeline=name, state=None, limit=RUNS_SHOWN).runs
    runs = [api.show_run(r.run_id, session, svc) for r in recent]
    needs = {s.name: list(s.needs) for s in PipelineSpec.model_validate(detail.spec).steps}
    return render(request, "pipeline.html", pipeline=detail, triggers=triggers, runs=runs,
                  needs=needs, spec_yaml=yaml.safe_dump(detail.spec, sort_keys=False))


@router.post("/ui/pipelines/{name}/runs")
def run_now(name: str, request: Request, session: Annotated[Session, Depends(db_session)],
            svc: Annotated[Services, Depends(services)], who: Who) -> Response:
    started = api.start_run(name, RunRequest(tenant=None, overrides=None), svc, session, who)
    return HTMLResponse(status_code=204, headers={
        "HX-Redirect": f"/ui/pipelines/{name}#run-{started.run_id}"})
