"""Request and response models of ``/pipelines``, separate from the table rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelyard.api.params import TenantValue
from modelyard.pipelines.spec import Overrides
from modelyard.pipelines.states import RunState, StepState
from modelyard.pipelines.tables import PipelineRow, PipelineRunRow, PipelineRunStepRow

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


def _shown(shown: Redact, text: str | None) -> str | None:
    return None if text is None else shown(text)
