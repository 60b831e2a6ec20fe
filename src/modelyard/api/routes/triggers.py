"""``GET /pipelines/{name}/triggers``: what the scheduler last saw of each trigger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from modelyard.api.deps import Services, db_session, require_token, services
from modelyard.api.redact import redactor_for
from modelyard.api.schemas import error_responses
from modelyard.pipelines import store
from modelyard.triggers.scheduler import trigger_states
from modelyard.triggers.tables import TriggerStateRow

router = APIRouter(tags=["pipelines"], responses=error_responses(404, 422),
                   dependencies=[Depends(require_token)])


class TriggerState(BaseModel):
    trigger: str = Field(description="its name (default: its type)")
    type: str
    tenant: str | None = Field(description="a per_tenant trigger's tenant")
    declared: dict[str, Any] = Field(description="the trigger as the pipeline declares it")
    next_due_at: dt.datetime | None = Field(description="a schedule's next due time")
    last_checked_at: dt.datetime | None
    last_check: dict[str, Any] | None = Field(
        description="the last check's verdict: fire, summary and figures")
    last_fired_at: dt.datetime | None
    last_run_id: str | None = Field(description="the run its last firing started")
    fired: int = Field(description="how many times it fired")
    last_skip: str | None = Field(description="why its last firing started nothing "
                                  "(debounced, a run already under way)")
    last_error: str | None = Field(description="why its last check failed")


class PipelineTriggers(BaseModel):
    pipeline: str
    scheduler: bool = Field(description="whether this server runs the scheduler")
    triggers: list[TriggerState]


@router.get("/pipelines/{name}/triggers")
def pipeline_triggers(name: str, session: Annotated[Session, Depends(db_session)],
                      svc: Annotated[Services, Depends(services)]) -> PipelineTriggers:
    """Each trigger of the pipeline: its last check and figures, its last firing and run,
    a schedule's next due time, and why a firing started nothing. A trigger the scheduler
    has not looked at yet is listed with its declaration alone."""
    spec = store.read_pipeline(session, name).parsed_spec
    shown = redactor_for(svc.settings).text  # a check's error names the data's real path
    states = {(s.trigger, s.tenant): s for s in trigger_states(session, name)}
    out = []
    for trigger in spec.triggers:
        mine: list[TriggerStateRow | None] = [
            s for (key, _), s in states.items() if key == trigger.key]
        for state in mine or [None]:
            out.append(TriggerState(
                trigger=trigger.key, type=trigger.type,
                tenant=(state.tenant or None) if state is not None else None,
                declared=trigger.model_dump(mode="json", exclude_none=True),
                next_due_at=state.next_due_at if state else None,
                last_checked_at=state.last_checked_at if state else None,
                last_check=_shown_check(state.last_check, shown) if state else None,
                last_fired_at=state.last_fired_at if state else None,
                last_run_id=state.last_run_id if state else None,
                fired=state.fired if state else 0,
                last_skip=shown(state.last_skip) if state and state.last_skip else None,
                last_error=shown(state.last_error) if state and state.last_error else None))
    return PipelineTriggers(pipeline=name, scheduler=svc.settings.scheduler, triggers=out)


def _shown_check(check: dict[str, Any] | None, shown: Callable[[str], str]
                 ) -> dict[str, Any] | None:
    if check is None or not isinstance(check.get("summary"), str):
        return check
    return {**check, "summary": shown(check["summary"])}
