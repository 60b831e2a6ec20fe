"""One pass over one run: collect the steps whose jobs ended, start the steps that are ready,
skip those whose needs failed, and end the run when every step has.

Every step move is a conditional UPDATE on the step's state (``pending -> running`` claims a
step), so two runners passing over the same run at once (two servers on one PostgreSQL)
cannot both start its job. A step's job is created in the transaction that claims the step.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from modelyard.errors import ModelyardError
from modelyard.jobs import store as jobs
from modelyard.jobs.states import JobState
from modelyard.pipelines.cache import UNCACHED
from modelyard.pipelines.launch import Launched, launch_step
from modelyard.pipelines.server_steps import Outcome, train_outcome
from modelyard.pipelines.spec import PipelineSpec, order
from modelyard.pipelines.states import STOPPING, RunState, StepState
from modelyard.pipelines.store import now, read_run, spec_of, steps_of
from modelyard.pipelines.tables import PipelineRunRow, PipelineRunStepRow
from modelyard.protocol.results import ExceptionInfo
from modelyard.protocol.steps import StepResult
from modelyard.settings import Settings


def advance_run(session: Session, run_id: str, settings: Settings) -> bool:
    """Move the run on as far as it can go now, and commit. Returns whether jobs were queued
    (the dispatcher is then woken)."""
    run = read_run(session, run_id, fresh=True)
    if RunState(run.state).terminal:
        return False
    if run.state == RunState.queued.value:
        _move_run(session, run, RunState.queued, RunState.running, started_at=now())
    spec = spec_of(run)
    rows = {r.name: r for r in steps_of(session, run_id)}
    for row in rows.values():
        if row.state == StepState.running.value and row.job_id is not None:
            _collect(session, spec, row)
    queued = False
    for name in order(spec.steps):
        row = rows[name]
        if row.state != StepState.pending.value:
            continue
        needs = [rows[n] for n in spec.step(name).needs]
        stopped = [n.name for n in needs if StepState(n.state) in STOPPING]
        if stopped:
            _end_step(session, row, StepState.skipped,
                      error=f"not run: step {stopped[0]!r}, which it needs, "
                            f"{rows[stopped[0]].state}")
        elif all(n.state == StepState.succeeded.value for n in needs):
            inputs = {n.name: n.outputs or {} for n in needs}
            queued = _start(session, settings, run, spec, row, inputs) or queued
    _finish_run(session, run, spec, rows)
    session.commit()
    return queued


def _start(session: Session, settings: Settings, run: PipelineRunRow, spec: PipelineSpec,
           row: PipelineRunStepRow, inputs: dict[str, Any]) -> bool:
    """Start one ready step: from the cache, as a job, or in the server. True if a job was
    queued."""
    if not _move_step(session, row, StepState.pending, StepState.running, started_at=now(),
                      attempts=row.attempts + 1):
        return False  # another runner claimed it
    if row.type in UNCACHED:
        # It commits as it goes (the registry's moves do), so nothing of this pass may wait
        # on it; a job step instead is claimed in the transaction that creates its job.
        session.commit()
    try:
        launched = launch_step(session, settings, run, spec.step(row.name), inputs,
                               use_cache=not row.no_cache)
    except ModelyardError as exc:  # what the step names cannot run: a data path, a command
        _end_step(session, row, StepState.failed, error=str(exc))
        return False
    row.cache_key = launched.cache_key
    if launched.job_id is not None:
        row.job_id = launched.job_id
        return True
    _record_outcome(session, row, launched)
    return False


def _record_outcome(session: Session, row: PipelineRunStepRow, launched: Launched) -> None:
    if launched.failed is not None:
        _end_step(session, row, StepState.failed, error=launched.failed)
    elif launched.outcome is not None:
        _end_step(session, row, StepState.succeeded, outputs=launched.outcome.outputs,
                  summary=launched.outcome.summary, cache_hit=launched.cached_from is not None,
                  reused_from=launched.cached_from)


def _collect(session: Session, spec: PipelineSpec, row: PipelineRunStepRow) -> None:
    """A running step's job: if it ended, so does the step (or it runs again: ``retries``)."""
    if row.job_id is None:
        return
    job = jobs.read_job(session, row.job_id, fresh=True)
    state = JobState(job.state)
    if not state.terminal:
        return
    if state is JobState.succeeded:
        outcome = (train_outcome(session, job) if row.type == "train"
                   else _step_outcome(job.result or {}))
        _end_step(session, row, StepState.succeeded, outputs=outcome.outputs,
                  summary=outcome.summary)
        return
    why = (ExceptionInfo.from_json(job.exception_info).reason if job.exception_info
           else f"its job {job.id} was {job.state}")
    if state is JobState.failed and row.attempts <= spec.step(row.name).retries:
        _move_step(session, row, StepState.running, StepState.pending, job_id=None,
                   error=f"attempt {row.attempts} failed: {why}")
        return
    _end_step(session, row, StepState.failed if state is JobState.failed
              else StepState.cancelled, error=why)


def _step_outcome(result: dict[str, Any]) -> Outcome:
    parsed = StepResult.from_json(result)
    outputs = dict(parsed.outputs)
    if parsed.artefacts:
        outputs.setdefault("artefacts", parsed.artefacts)
    return Outcome(outputs, parsed.summary)


def _finish_run(session: Session, run: PipelineRunRow, spec: PipelineSpec,
                rows: dict[str, PipelineRunStepRow]) -> None:
    if not all(StepState(r.state).terminal for r in rows.values()):
        return
    failed = [rows[n] for n in order(spec.steps) if rows[n].state == StepState.failed.value]
    if failed:
        to, error = RunState.failed, f"step {failed[0].name!r} failed: {failed[0].error}"
    elif any(r.state != StepState.succeeded.value for r in rows.values()):
        to, error = RunState.cancelled, "a step was cancelled"
    else:
        to, error = RunState.succeeded, None
    _move_run(session, run, RunState.running, to, error=error, finished_at=now())


def _move_run(session: Session, run: PipelineRunRow, source: RunState, to: RunState,
              **values: Any) -> bool:
    done = session.execute(update(PipelineRunRow).where(
        PipelineRunRow.id == run.id, PipelineRunRow.state == source.value)
        .values(state=to.value, updated_at=now(), **values))
    session.refresh(run)
    return bool(done.rowcount)  # type: ignore[attr-defined]


def _move_step(session: Session, row: PipelineRunStepRow, source: StepState, to: StepState,
               **values: Any) -> bool:
    done = session.execute(update(PipelineRunStepRow).where(
        PipelineRunStepRow.id == row.id, PipelineRunStepRow.state == source.value)
        .values(state=to.value, **values))
    session.refresh(row)
    return bool(done.rowcount)  # type: ignore[attr-defined]


def _end_step(session: Session, row: PipelineRunStepRow, to: StepState, **values: Any) -> None:
    """End a pending or running step (a cancel through another path wins)."""
    source = StepState(row.state)
    if not source.terminal:
        _move_step(session, row, source, to, finished_at=now(), **values)

