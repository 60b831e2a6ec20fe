"""Online experiments over HTTP: create, list, the scorecard, stop, ship; and outcomes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from modelyard.api.auth import actor_of
from modelyard.api.deps import Who, db_session, require_token
from modelyard.api.experiment_schemas import (
    Experiment,
    ExperimentList,
    OutcomesAnswer,
    OutcomesIn,
    Ship,
    Stop,
    experiment_of,
)
from modelyard.api.params import OptionalModelName
from modelyard.api.schemas import error_responses
from modelyard.experiments import finish, outcomes, store
from modelyard.experiments.spec import ExperimentSpec
from modelyard.jobs import store as jobs
from modelyard.registry import store as registry


def _refresh_split(request: Request) -> Iterator[None]:
    """After a change, split by it at once: the next predict call already sees it."""
    yield
    serving = getattr(request.app.state, "serving", None)
    if serving is not None and request.method != "GET":
        serving.experiments.refresh()
        serving.router.refresh()


router = APIRouter(tags=["experiments"],
                   dependencies=[Depends(require_token),
                                 Depends(_refresh_split, scope="function")],
                   responses=error_responses(400, 404, 422))
DB = Annotated[Session, Depends(db_session)]
State = Literal["running", "halted", "stopped", "concluded", "shipped"]


@router.post("/experiments", status_code=201, responses=error_responses(409))
def create(session: DB, spec: ExperimentSpec, who: Who) -> Experiment:
    """Start an experiment between registered versions of (model, tenant); 409 while another
    one runs for them."""
    row = store.create_experiment(session, spec, who.name)
    return experiment_of(row, finish.scorecard_of(session, row))


@router.get("/experiments")
def list_experiments(session: DB, model: OptionalModelName = None, state: State | None = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> ExperimentList:
    """Experiments, newest first (without their scorecards: GET /experiments/{id})."""
    rows = store.list_experiments(session, model, state, limit)
    return ExperimentList(experiments=[experiment_of(r) for r in rows])


@router.get("/experiments/{experiment_id}")
async def scorecard(experiment_id: str, request: Request) -> Experiment:
    """The experiment and its scorecard: per arm traffic, outcomes, the primary metric with
    its interval, lift against control, guardrails, the recommendation."""
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:  # this server's counts so far are in what the card reads
        await run_in_threadpool(serving.experiments.flush)
    return await run_in_threadpool(_scorecard, request, experiment_id)


def _scorecard(request: Request, experiment_id: str) -> Experiment:
    with request.app.state.services.sessions() as session:
        row = store.read_experiment(session, experiment_id)
        return experiment_of(row, finish.scorecard_of(session, row))


@router.post("/experiments/{experiment_id}/stop", responses=error_responses(409))
def stop(session: DB, experiment_id: str, body: Stop, who: Who) -> Experiment:
    """Stop it: all traffic back to production; audited with the reason."""
    row = store.read_experiment(session, experiment_id)
    row = finish.stop_experiment(session, row, actor=actor_of(who, body.actor, "actor"),
                                 reason=body.reason)
    return experiment_of(row)


@router.post("/experiments/{experiment_id}/ship", responses=error_responses(409))
def ship(session: DB, experiment_id: str, body: Ship, who: Who) -> Experiment:
    """Ship the winning arm: the caller's approval puts its version in production through the
    model's approval gate (four eyes and guard rails apply), and the experiment ends."""
    row = store.read_experiment(session, experiment_id)
    submitted_by = None
    arm = body.arm or finish.scorecard_of(session, row).recommendation.arm
    if who.authenticated and arm is not None:  # four eyes: who trained the shipped version
        version = next((a.version for a in store.parsed(row).arms if a.name == arm), None)
        job_id = (registry.read_version(session, row.model_name, version, row.tenant).job_id
                  if version is not None else None)
        submitted_by = jobs.read_job(session, job_id).submitted_by if job_id else None
    row = finish.ship_experiment(session, row, actor=actor_of(who, body.user, "user"),
                                 arm=body.arm, comment=body.comment,
                                 identified=who.authenticated, submitted_by=submitted_by)
    return experiment_of(row)


@router.post("/outcomes")
async def add_outcomes(body: OutcomesIn, request: Request) -> OutcomesAnswer:
    """Rewards of served requests (by request id, or by unit with the experiment's id),
    counted for the arm that served them; late and duplicate ones are counted apart."""
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:  # the assignments so far are in what outcomes match
        await run_in_threadpool(serving.experiments.flush)
    now = dt.datetime.now(dt.UTC)
    batch = [outcomes.Outcome(reward=o.reward, at=o.time or now, request_id=o.request_id,
                              row=o.row, unit=o.unit) for o in body.outcomes]

    def add() -> outcomes.OutcomesAdded:
        with request.app.state.services.sessions() as session:
            return outcomes.add_outcomes(session, batch, body.experiment_id)

    added = await run_in_threadpool(add)
    return OutcomesAnswer(**dataclasses.asdict(added))
