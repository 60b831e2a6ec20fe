"""Store functions of pipelines: their specs, and reads of their runs (verb_noun).

Routes, the runner and the scheduler call these and never write pipeline SQL themselves; the
writes of a run's life (start, cancel, rerun) are :mod:`modelyard.pipelines.runs`'.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.errors import NotFound
from modelyard.pipelines.spec import PipelineSpec
from modelyard.pipelines.states import RunState
from modelyard.pipelines.tables import PipelineRow, PipelineRunRow, PipelineRunStepRow


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def save_pipeline(session: Session, spec: PipelineSpec, *, model_name: str | None,
                  updated_by: str | None) -> PipelineRow:
    """Create the pipeline, or replace the one of the same name, and commit. Runs under way
    keep the spec they started with."""
    at = now()
    row = session.get(PipelineRow, spec.name)
    if row is None:
        row = PipelineRow(name=spec.name, created_at=at)
        session.add(row)
    row.description = spec.description
    row.model_name = spec.model or model_name
    row.spec = spec.to_json()
    row.updated_at = at
    row.updated_by = updated_by
    session.commit()
    return row


def read_pipeline(session: Session, name: str) -> PipelineRow:
    """The pipeline row (``row.parsed_spec``: its spec as a model, triggers included).

    Raises:
        NotFound: no pipeline of that name.
    """
    row = session.get(PipelineRow, name)
    if row is None:
        raise NotFound(f"no pipeline {name!r}; list them with GET /pipelines or `modelyard "
                       "pipelines list`, create one with `modelyard pipelines create FILE`")
    return row


def spec_of(row: PipelineRow | PipelineRunRow) -> PipelineSpec:
    """A pipeline's (or a run's copy of its) spec, parsed."""
    return PipelineSpec.model_validate(row.spec)


def list_pipelines(session: Session, *, model_name: str | None = None) -> list[PipelineRow]:
    """Every pipeline (or those that train ``model_name``), by name."""
    query = select(PipelineRow)
    if model_name is not None:
        query = query.where(PipelineRow.model_name == model_name)
    return list(session.scalars(query.order_by(PipelineRow.name)).all())


def last_runs(session: Session, names: Sequence[str]) -> dict[str, PipelineRunRow]:
    """Each pipeline's newest run (of any tenant), by pipeline name."""
    if not names:
        return {}
    newest = (select(PipelineRunRow.pipeline_name,
                     func.max(PipelineRunRow.created_at).label("at"))
              .where(PipelineRunRow.pipeline_name.in_(names))
              .group_by(PipelineRunRow.pipeline_name).subquery())
    rows = session.scalars(select(PipelineRunRow).join(
        newest, (PipelineRunRow.pipeline_name == newest.c.pipeline_name)
        & (PipelineRunRow.created_at == newest.c.at))).all()
    return {r.pipeline_name: r for r in rows}


def count_runs(session: Session) -> dict[tuple[str, RunState], int]:
    """Runs by (pipeline, state), in one GROUP BY; pairs with no runs are absent."""
    rows = session.execute(select(PipelineRunRow.pipeline_name, PipelineRunRow.state,
                                  func.count()).group_by(PipelineRunRow.pipeline_name,
                                                         PipelineRunRow.state))
    return {(name, RunState(state)): count for name, state, count in rows}


def newest_run_states(session: Session) -> dict[str, RunState]:
    """The state of each pipeline's newest run (of any tenant), by pipeline name; a pipeline
    that never ran is absent."""
    newest = (select(PipelineRunRow.pipeline_name,
                     func.max(PipelineRunRow.created_at).label("at"))
              .group_by(PipelineRunRow.pipeline_name).subquery())
    rows = session.execute(select(PipelineRunRow.pipeline_name, PipelineRunRow.state).join(
        newest, (PipelineRunRow.pipeline_name == newest.c.pipeline_name)
        & (PipelineRunRow.created_at == newest.c.at)))
    return {name: RunState(state) for name, state in rows}


def read_run(session: Session, run_id: str, *, fresh: bool = False) -> PipelineRunRow:
    run = session.get(PipelineRunRow, run_id, populate_existing=fresh)
    if run is None:
        raise NotFound(f"no pipeline run {run_id!r}; list runs with GET /pipelines/runs or "
                       "`modelyard pipelines status`")
    return run


def steps_of(session: Session, run_id: str) -> list[PipelineRunStepRow]:
    """A run's steps, in the order they were written (the spec's order)."""
    return steps_of_runs(session, [run_id]).get(run_id, [])


def steps_of_runs(session: Session, run_ids: Sequence[str]
                  ) -> dict[str, list[PipelineRunStepRow]]:
    """The steps of each run in ``run_ids``, in the spec's order, in one query."""
    out: dict[str, list[PipelineRunStepRow]] = {}
    if not run_ids:
        return out
    for step in session.scalars(select(PipelineRunStepRow).where(
            PipelineRunStepRow.run_id.in_(set(run_ids))).order_by(PipelineRunStepRow.id)):
        out.setdefault(step.run_id, []).append(step)
    return out


def list_runs(session: Session, *, pipeline: str | Sequence[str] | None = None,
              state: str | None = None, limit: int = 50) -> list[PipelineRunRow]:
    """Runs newest first, filtered (``pipeline``: one pipeline's name, or several)."""
    query = select(PipelineRunRow)
    if isinstance(pipeline, str):
        query = query.where(PipelineRunRow.pipeline_name == pipeline)
    elif pipeline is not None:
        query = query.where(PipelineRunRow.pipeline_name.in_(pipeline))
    if state is not None:
        query = query.where(PipelineRunRow.state == state)
    return list(session.scalars(query.order_by(PipelineRunRow.created_at.desc(),
                                               PipelineRunRow.id).limit(limit)).all())


def active_run_ids(session: Session) -> list[str]:
    """The runs the runner advances: queued or running, oldest first."""
    return list(session.scalars(select(PipelineRunRow.id).where(
        PipelineRunRow.state.in_(("queued", "running")))
        .order_by(PipelineRunRow.created_at)).all())


def cached_step(session: Session, cache_key: str) -> PipelineRunStepRow | None:
    """The newest succeeded step with this cache key whose outputs were its own (not reused)."""
    return session.scalars(select(PipelineRunStepRow).where(
        PipelineRunStepRow.cache_key == cache_key,
        PipelineRunStepRow.state == "succeeded")
        .order_by(PipelineRunStepRow.finished_at.desc()).limit(1)).first()
