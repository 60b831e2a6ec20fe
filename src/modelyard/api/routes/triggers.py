"""``GET /pipelines/{name}/triggers``: what the scheduler last saw of each trigger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from modelyard.api.deps import Services, db_session, require_token, services
from modelyard.api.pipeline_schemas import PipelineTriggers, triggers_of
from modelyard.api.redact import redactor_for
from modelyard.api.schemas import error_responses
from modelyard.pipelines import store
from modelyard.triggers.scheduler import trigger_states

router = APIRouter(tags=["pipelines"], responses=error_responses(404, 422),
                   dependencies=[Depends(require_token)])


@router.get("/pipelines/{name}/triggers")
def pipeline_triggers(name: str, session: Annotated[Session, Depends(db_session)],
                      svc: Annotated[Services, Depends(services)]) -> PipelineTriggers:
    """Each trigger of the pipeline: its last check and figures, its last firing and run,
    a schedule's next due time, and why a firing started nothing. A trigger the scheduler
    has not looked at yet is listed with its declaration alone."""
    row = store.read_pipeline(session, name)
    out = triggers_of(row, trigger_states(session, name), redactor_for(svc.settings).text)
    return PipelineTriggers(pipeline=name, scheduler=svc.settings.scheduler, triggers=out)
