"""``/ui/pipelines`` and ``/ui/pipelines/{name}``: pipelines, their triggers and their runs,
each run's steps in the order the DAG runs them.

The pages call the JSON routes' own functions (``GET /pipelines``, ``/pipelines/{name}``,
``/pipelines/{name}/triggers``) and build each run as ``/pipelines/runs/{id}`` does
(``run_detail``), reading a page's runs and all their steps in two queries; ``Run now`` goes
through ``POST /pipelines/{name}/runs``' function.
"""

from __future__ import annotations

from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from modelyard.api.deps import Services, Who, db_session, services
from modelyard.api.pipeline_schemas import Redact, RunDetail, RunRequest, run_detail
from modelyard.api.redact import redactor_for
from modelyard.api.routes import pipelines as api
from modelyard.api.routes import triggers as trigger_api
from modelyard.pipelines import store
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
    runs = recent_runs(session, [name], RUNS_SHOWN, redactor_for(svc.settings).text)
    needs = {s.name: list(s.needs) for s in PipelineSpec.model_validate(detail.spec).steps}
    return render(request, "pipeline.html", pipeline=detail, triggers=triggers, runs=runs,
                  needs=needs, spec_yaml=yaml.safe_dump(detail.spec, sort_keys=False))


def recent_runs(session: Session, names: list[str], limit: int, shown: Redact
                ) -> list[RunDetail]:
    """The newest ``limit`` runs of the pipelines ``names``, each with its steps, as
    ``GET /pipelines/runs/{id}`` answers them: two queries, whatever the number of runs."""
    runs = store.list_runs(session, pipeline=names, limit=limit) if names else []
    steps = store.steps_of_runs(session, [r.id for r in runs])
    return [run_detail(r, steps.get(r.id, []), shown) for r in runs]


@router.post("/ui/pipelines/{name}/runs")
def run_now(name: str, request: Request, session: Annotated[Session, Depends(db_session)],
            svc: Annotated[Services, Depends(services)], who: Who) -> Response:
    started = api.start_run(name, RunRequest(tenant=None, overrides=None), svc, session, who)
    return HTMLResponse(status_code=204, headers={
        "HX-Redirect": f"/ui/pipelines/{name}#run-{started.run_id}"})
