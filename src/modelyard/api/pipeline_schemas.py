"""Request and response models of ``/pipelines`` (and of their triggers), separate from the
table rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelyard.api.params import TenantValue
from modelyard.pipelines.spec import Overrides
from modelyard.pipelines.states import RunState, StepState
from modelyard.pipelines.tables import PipelineRow, PipelineRunRow, PipelineRunStepRow
from modelyard.triggers.tables import TriggerStateRow

Redact = Callable[[str], str]


class RunRequest(BaseModel):
    """``POST /pipelines/{name}/runs``: one tenant of a fleet (default all), and what this run
    changes of its steps."""

    model_config = ConfigDict(extra="forbid")

    tenant: TenantValue | None = None
    overrides: Overrides | None = Field(None, description="{step: {image, command}}")


class RunStarted(BaseModel):
    run_id: str
    pipeline: str


class RunSummary(BaseModel):
    run_id: str
    pipeline: str
    tenant: str | None
    state: RunState
    reason: dict[str, Any]
    started_by: str | None
    rerun_of: str | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class StepStatus(BaseModel):
    name: str
    type: str
    state: StepState
    job_id: str | None
    attempts: int
    cache_hit: bool
    reused_from: str | None = Field(description="the run whose outputs it reused")
    outputs: dict[str, Any] | None
    summary: str | None
    error: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class RunDetail(RunSummary):
    steps: list[StepStatus]
    overrides: dict[str, Any] | None
    waiting_for_approval: list[str] = Field(
        description="the deploy steps' versions that wait for a person's approval")


class PipelineSummary(BaseModel):
    name: str
    description: str
    model_name: str | None
    steps: list[str]
    updated_at: dt.datetime
    updated_by: str | None
    last_run: RunSummary | None
    failing: bool = Field(description="its last run failed")


class PipelineDetail(PipelineSummary):
    spec: dict[str, Any]


class PipelineList(BaseModel):
    pipelines: list[PipelineSummary]
    failing: list[str]


class RunList(BaseModel):
    runs: list[RunSummary]


def run_summary(run: PipelineRunRow, shown: Redact) -> RunSummary:
    """``shown``: what an answer may show of a message (the server's paths hidden)."""
    return RunSummary(run_id=run.id, pipeline=run.pipeline_name, tenant=run.tenant or None,
                      state=RunState(run.state), reason=run.reason, started_by=run.started_by,
                      rerun_of=run.rerun_of, error=_shown(shown, run.error),
                      created_at=run.created_at, started_at=run.started_at,
                      finished_at=run.finished_at)


def run_detail(run: PipelineRunRow, steps: list[PipelineRunStepRow], shown: Redact
               ) -> RunDetail:
    waiting = [shown(s.summary) for s in steps if s.summary
               and s.state == StepState.succeeded.value
               and (s.outputs or {}).get("awaiting_approval")]
    return RunDetail(**run_summary(run, shown).model_dump(), overrides=run.overrides,
                     waiting_for_approval=waiting, steps=[StepStatus(
                         name=s.name, type=s.type, state=StepState(s.state), job_id=s.job_id,
                         attempts=s.attempts, cache_hit=s.cache_hit, reused_from=s.reused_from,
                         outputs=s.outputs, summary=_shown(shown, s.summary),
                         error=_shown(shown, s.error), started_at=s.started_at,
                         finished_at=s.finished_at) for s in steps])


def pipeline_summary(row: PipelineRow, last: PipelineRunRow | None, shown: Redact
                     ) -> PipelineSummary:
    return PipelineSummary(
        name=row.name, description=row.description, model_name=row.model_name,
        steps=[s["name"] for s in row.spec.get("steps", [])], updated_at=row.updated_at,
        updated_by=row.updated_by, last_run=run_summary(last, shown) if last else None,
        failing=last is not None and last.state == RunState.failed.value)


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


def triggers_of(row: PipelineRow, states: list[TriggerStateRow], shown: Redact
                ) -> list[TriggerState]:
    """Each trigger the pipeline declares with what the scheduler last saw of it (one line per
    tenant of a per_tenant trigger); one the scheduler has not looked at yet, with its
    declaration alone."""
    by_key = {(s.trigger, s.tenant): s for s in states}
    out = []
    for trigger in row.parsed_spec.triggers:
        mine: list[TriggerStateRow | None] = [
            s for (key, _), s in by_key.items() if key == trigger.key]
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
    return out


def _shown_check(check: dict[str, Any] | None, shown: Redact) -> dict[str, Any] | None:
    if check is None or not isinstance(check.get("summary"), str):
        return check
    return {**check, "summary": shown(check["summary"])}


def _shown(shown: Redact, text: str | None) -> str | None:
    return None if text is None else shown(text)
