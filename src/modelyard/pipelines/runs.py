"""A run's life: start one (at most one active per pipeline and tenant), cancel it, rerun it.

The scheduler calls :func:`start_run` and :func:`active_run`; the routes call all of these. A
run is written ``queued`` with one ``pending`` row per step; :mod:`modelyard.pipelines.runner`
advances it from there. "One active run per (pipeline, tenant)" is the database's unique
partial index on queued and running runs, so two servers (or threads) starting one at the
same moment cannot both succeed: the second gets :class:`~modelyard.errors.Conflict`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.errors import Conflict, RequestError
from modelyard.jobs import store as jobs
from modelyard.jobs.states import JobState
from modelyard.pipelines.spec import Overrides, PipelineSpec, downstream
from modelyard.pipelines.states import RunState, StepState
from modelyard.pipelines.store import now, read_pipeline, read_run, spec_of, steps_of
from modelyard.pipelines.tables import ACTIVE_RUN_STATES, PipelineRunRow, PipelineRunStepRow
from modelyard.request.loading import describe_validation_error

_OVERRIDES: TypeAdapter[Overrides] = TypeAdapter(Overrides)


def active_run(session: Session, pipeline_name: str, tenant: str | None
               ) -> PipelineRunRow | None:
    """The queued or running run of (pipeline, tenant), if there is one."""
    return session.scalars(select(PipelineRunRow).where(
        PipelineRunRow.pipeline_name == pipeline_name,
        PipelineRunRow.tenant == (tenant or ""),
        PipelineRunRow.state.in_(ACTIVE_RUN_STATES))).first()


def start_run(session: Session, pipeline_name: str, *, tenant: str | None = None,
              reason: dict[str, Any], started_by: str | None,
              overrides: Mapping[str, Any] | None = None) -> PipelineRunRow:
    """Queue a run of the pipeline (of one tenant of its fleet, with ``tenant``) and commit.

    Args:
        reason: who or which trigger started it and why (JSON), shown with the run.
        overrides: ``{step: {image, command}}``: what this run changes of its steps.

    Raises:
        NotFound: no such pipeline.
        RequestError: an override names no step of it, or a command for a step that is not a
            command step.
        Conflict: a run of the same pipeline and tenant is queued or running.
    """
    spec = spec_of(read_pipeline(session, pipeline_name))
    checked = check_overrides(spec, overrides)
    steps = {s.name: _pending(s.name, s.type) for s in spec.steps}
    return _insert(session, spec, tenant, reason, started_by, checked, None, steps)


def rerun(session: Session, run_id: str, *, from_step: str | None, started_by: str | None
          ) -> PipelineRunRow:
    """A new run of the run's pipeline (its spec as it is now), tenant and overrides.

    With ``from_step``: the steps upstream of it reuse the earlier run's outputs where they
    succeeded there, and ``from_step`` and everything downstream of it run again, whatever the
    cache holds. Without: every step is looked up in the cache, so only what failed or
    changed runs.

    Raises:
        RequestError: ``from_step`` is no step of the pipeline.
        Conflict: a run of the same pipeline and tenant is active.
    """
    old = read_run(session, run_id)
    spec = spec_of(read_pipeline(session, old.pipeline_name))
    names = [s.name for s in spec.steps]
    if from_step is not None and from_step not in names:
        raise RequestError(f"from_step: {from_step!r} is no step of pipeline "
                           f"{old.pipeline_name!r} (steps: {', '.join(names)})")
    again = downstream(spec, from_step) if from_step is not None else set(names)
    earlier = {s.name: s for s in steps_of(session, run_id)}
    steps: dict[str, PipelineRunStepRow] = {}
    for step in spec.steps:
        row = _pending(step.name, step.type)
        before = earlier.get(step.name)
        if from_step is None:
            pass
        elif step.name in again:
            row.no_cache = True
        elif before is not None and before.state == StepState.succeeded.value:
            row.state = StepState.succeeded.value
            row.outputs, row.cache_key = before.outputs, before.cache_key
            row.reused_from = before.reused_from or run_id
            row.summary = f"reused from run {run_id} (upstream of {from_step})"
            row.started_at = row.finished_at = now()
        steps[step.name] = row
    reason = {"rerun_of": run_id, "from_step": from_step, "by": started_by}
    return _insert(session, spec, old.tenant or None, reason, started_by, old.overrides,
                   run_id, steps)


def cancel_run(session: Session, run_id: str, reason: str) -> list[str]:
    """Cancel an active run: its pending and running steps, and their jobs; commits.

    Returns the jobs cancelled (the dispatcher stops their workers once woken).

    Raises:
        Conflict: the run has already ended.
    """
    run = read_run(session, run_id)
    at = now()
    moved = session.execute(update(PipelineRunRow).where(
        PipelineRunRow.id == run_id, PipelineRunRow.state.in_(ACTIVE_RUN_STATES))
        .values(state=RunState.cancelled.value, error=reason, finished_at=at, updated_at=at)
        .execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"pipeline run {run_id} has already ended ({run.state}); nothing to "
                       "cancel")
    # One conditional UPDATE: a runner starting a step's job at this moment either committed
    # first (its job id comes back here) or finds the step cancelled and starts nothing.
    job_ids = [j for j in session.scalars(update(PipelineRunStepRow).where(
        PipelineRunStepRow.run_id == run_id,
        PipelineRunStepRow.state.in_((StepState.pending.value, StepState.running.value)))
        .values(state=StepState.cancelled.value, error=reason, finished_at=at)
        .returning(PipelineRunStepRow.job_id)
        .execution_options(synchronize_session=False)).all() if j is not None]
    cancelled = jobs.move_jobs(session, job_ids, JobState.cancelled,
                               f"its pipeline run {run_id} was cancelled")
    for job_id in cancelled:
        jobs.cancel_children(session, job_id, f"its pipeline run {run_id} was cancelled")
    session.commit()
    session.refresh(run)
    return cancelled


def check_overrides(spec: PipelineSpec, overrides: Mapping[str, Any] | None
                    ) -> dict[str, Any] | None:
    """``overrides`` validated against the spec, as JSON (None when there are none)."""
    if not overrides:
        return None
    try:
        parsed = _OVERRIDES.validate_python(dict(overrides))
    except ValidationError as exc:
        raise RequestError(describe_validation_error(exc).replace(
            "invalid train request", "invalid overrides")) from None
    names = {s.name: s for s in spec.steps}
    for name, override in parsed.items():
        step = names.get(name)
        if step is None:
            raise RequestError(f"overrides: {name!r} is no step of pipeline {spec.name!r} "
                               f"(steps: {', '.join(names)})")
        if override.command is not None and step.type != "command":
            raise RequestError(f"overrides.{name}.command: step {name!r} is a {step.type} "
                               "step; only command steps take a command")
        if override.image is not None and step.type not in ("validate_data", "evaluate",
                                                             "command"):
            raise RequestError(f"overrides.{name}.image: step {name!r} is a {step.type} "
                               "step, which runs in the server and takes no image")
    return {k: v.model_dump(exclude_none=True) for k, v in parsed.items()}


def _pending(name: str, type_: str) -> PipelineRunStepRow:
    return PipelineRunStepRow(name=name, type=type_, state=StepState.pending.value, attempts=0,
                              cache_hit=False, no_cache=False)


def _insert(session: Session, spec: PipelineSpec, tenant: str | None, reason: dict[str, Any],
            started_by: str | None, overrides: dict[str, Any] | None, rerun_of: str | None,
            steps: dict[str, PipelineRunStepRow]) -> PipelineRunRow:
    active = active_run(session, spec.name, tenant)
    if active is not None:
        raise _busy(spec.name, tenant, active.id)
    at = now()
    run = PipelineRunRow(id=uuid.uuid4().hex, pipeline_name=spec.name, tenant=tenant or "",
                         state=RunState.queued.value, spec=spec.to_json(), reason=reason,
                         started_by=started_by, overrides=overrides, rerun_of=rerun_of,
                         created_at=at, updated_at=at)
    session.add(run)
    session.flush()  # the run's row before its steps' (their foreign key)
    for row in steps.values():
        row.run_id = run.id
        session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the unique index on active runs: another start came first
        session.rollback()
        other = active_run(session, spec.name, tenant)
        raise _busy(spec.name, tenant, other.id if other else "?") from None
    return run


def _busy(pipeline: str, tenant: str | None, run_id: str) -> Conflict:
    of = f" for tenant {tenant!r}" if tenant else ""
    return Conflict(f"pipeline {pipeline!r}{of} already has a run under way ({run_id}); wait "
                    f"for it, or cancel it with `modelyard pipelines cancel {run_id}`")
