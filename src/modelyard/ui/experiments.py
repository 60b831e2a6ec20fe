"""``/ui/experiments`` and ``/ui/experiments/{id}``: online experiments, filtered by model and
state, and one experiment's scorecard (per arm traffic, outcomes, the primary metric with its
interval, lift against control, guardrails, the share each arm served over time, the
recommendation).

The pages call the JSON routes' own functions (``GET /experiments``,
``GET /experiments/{id}``); Stop and Ship call ``POST /experiments/{id}/stop`` and ``/ship``'s,
so the audit, the approval gate and four eyes apply to a click as to a ``POST``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError

from modelyard.api.auth import IDENTITY
from modelyard.api.deps import Services, Who, services
from modelyard.api.experiment_schemas import Experiment, Ship, Stop
from modelyard.api.routes import experiments as api
from modelyard.auth.roles import ANONYMOUS, Identity, Role
from modelyard.errors import RequestError
from modelyard.experiments.store import served_times
from modelyard.request.limits import validate_name
from modelyard.ui.charts import Chart, Series, spec
from modelyard.ui.forms import choice, read_form
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)
LISTED = 200
SERVED_SHOWN = 20_000  # the newest assignments the chart reads
TIME_BINS = 30
PER_BIN = 20  # the fewest requests a bin's shares are drawn from, while there are few
B = TypeVar("B", bound=BaseModel)


class ExperimentState(enum.StrEnum):
    running = "running"
    halted = "halted"
    stopped = "stopped"
    concluded = "concluded"
    shipped = "shipped"


@router.get("/ui/experiments")
def experiments_page(request: Request, svc: Annotated[Services, Depends(services)],
                     model: str = "", state: str = "") -> HTMLResponse:
    chosen = choice(ExperimentState, state, "state", "state of an experiment")
    name = _model(model)
    with svc.sessions() as session:
        listing = api.list_experiments(session, name, chosen.value if chosen else None,
                                       LISTED)
    return render(request, "experiments.html", listing=listing, model=model,
                  state=chosen.value if chosen else "", states=list(ExperimentState))


@router.get("/ui/experiments/{experiment_id}")
async def experiment_page(experiment_id: str, request: Request,
                          svc: Annotated[Services, Depends(services)]) -> HTMLResponse:
    card = await api.scorecard(experiment_id, request)
    with svc.sessions() as session:
        served = served_times(session, card.id, SERVED_SHOWN)
    return render(request, "experiment.html", card=card, can_change=_can_change(request),
                  served=spec(served_chart(card, served)))


@router.post("/ui/experiments/{experiment_id}/stop")
async def stop_action(experiment_id: str, request: Request,
                      svc: Annotated[Services, Depends(services)], who: Who) -> HTMLResponse:
    form = await read_form(request)
    body = _body(Stop, {"reason": form.get("reason", "").strip(),
                        "actor": form.get("actor") or None})
    with svc.sessions() as session:
        api.stop(session, experiment_id, body, who)
    return _changed(request, experiment_id)


@router.post("/ui/experiments/{experiment_id}/ship")
async def ship_action(experiment_id: str, request: Request,
                      svc: Annotated[Services, Depends(services)], who: Who) -> HTMLResponse:
    form = await read_form(request)
    body = _body(Ship, {"comment": form.get("comment", "").strip(),
                        "arm": form.get("arm") or None, "user": form.get("user") or None})
    with svc.sessions() as session:
        api.ship(session, experiment_id, body, who)
    return _changed(request, experiment_id)


def served_chart(card: Experiment, served: Sequence[tuple[dt.datetime, str]]) -> Chart:
    """Each arm's share of the requests the experiment served, per time bin since it
    started (the newest :data:`SERVED_SHOWN` requests)."""
    arms = [a.name for a in card.spec.arms]
    title = "Share of requests each arm served"
    if not served:
        return Chart(kind="line", title=title, x_label="seconds since the start",
                     y_label="share", series=tuple(Series(a, [], []) for a in arms))
    start = card.created_at
    seconds = [max(0.0, (at - start).total_seconds()) for at, _ in served]
    lo, hi = min(seconds), max(seconds)
    n_bins = max(1, min(TIME_BINS, len(served) // PER_BIN))
    width = (hi - lo) / n_bins or 1.0
    counts = [[0] * len(arms) for _ in range(n_bins)]
    for s, (_, arm) in zip(seconds, served, strict=True):
        if arm in arms:
            counts[min(int((s - lo) / width), n_bins - 1)][arms.index(arm)] += 1
    bins = [(lo + (i + 0.5) * width, c) for i, c in enumerate(counts) if sum(c)]
    return Chart(kind="line", title=title, x_label="seconds since the start", y_label="share",
                 series=tuple(Series(a, [x for x, _ in bins], [c[i] / sum(c) for _, c in bins])
                              for i, a in enumerate(arms)))


def _model(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        return validate_name("model name", value.strip())
    except ValueError as exc:
        raise RequestError(f"model: {exc}") from None


def _body(kind: type[B], fields: dict[str, str | None]) -> B:
    try:
        return kind.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RequestError(f"{where}: {first['msg']}") from None


def _changed(request: Request, experiment_id: str) -> HTMLResponse:
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:  # as the JSON routes do: the next predict splits by the change
        serving.experiments.refresh()
        serving.router.refresh()
    return HTMLResponse(status_code=204, headers={
        "HX-Redirect": f"/ui/experiments/{experiment_id}"})


def _can_change(request: Request) -> bool:
    """Whether the caller may press Stop and Ship (an approver, as the JSON routes require);
    the middleware refuses anyone else's click whether or not the page shows them."""
    who: Identity = request.scope.get(IDENTITY, ANONYMOUS)
    return who.role.allows(Role.approver)
