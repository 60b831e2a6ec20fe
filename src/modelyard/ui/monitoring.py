"""``/ui/models/{name}/monitoring``: the version serving a tenant, watched over time.

Drift day by day (:func:`~modelyard.monitoring.history.drift_history`, ``monitor`` once per
day, as ``GET /models/{name}/monitoring/history``), decay by window and staleness over the
whole span (``monitor`` once more, as ``GET /models/{name}/monitoring``), and the continuous
training around it: the triggers of the model's pipelines and their recent runs with each
step's state (the store functions and schemas of ``/pipelines``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from modelyard.api.deps import Services, services
from modelyard.api.params import ModelName, OptionalTenant
from modelyard.api.pipeline_schemas import Redact, RunDetail, TriggerState, triggers_of
from modelyard.api.redact import redactor_for
from modelyard.errors import NotFound
from modelyard.monitoring import stats
from modelyard.monitoring.history import MAX_WINDOWS, DriftHistory, drift_history
from modelyard.monitoring.report import MonitoringReport
from modelyard.monitoring.service import monitor
from modelyard.pipelines import store as pipelines
from modelyard.registry import store as registry
from modelyard.triggers.scheduler import trigger_states
from modelyard.ui.charts import Chart, Series, spec
from modelyard.ui.pipelines import recent_runs
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)
RUNS_SHOWN = 10


@dataclasses.dataclass(frozen=True)
class TriggerLine:
    pipeline: str
    state: TriggerState


@dataclasses.dataclass(frozen=True)
class ContinuousTraining:
    pipelines: list[str]  # those that train the model
    triggers: list[TriggerLine]
    runs: list[RunDetail]  # newest first


@router.get("/ui/models/{model_name}/monitoring")
def monitoring_page(request: Request, model_name: ModelName,
                    svc: Annotated[Services, Depends(services)], tenant: OptionalTenant = None,
                    days: Annotated[int, Query(ge=1, le=MAX_WINDOWS)] = 14) -> HTMLResponse:
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:
        serving.production_log.flush()  # this server's buffered rows, into the log read below
    shown = redactor_for(svc.settings).text
    history: DriftHistory | None = None
    report: MonitoringReport | None = None
    missing = None
    with svc.sessions() as session:
        if registry.latest_version(session, model_name) is None:
            raise NotFound(f"model {model_name!r} has no versions; pick one at /ui/models")
        try:
            history = drift_history(session, svc.settings, model_name, tenant, windows=days)
            report = monitor(session, svc.settings, model_name, tenant,
                             dt.timedelta(days=days))
        except NotFound as exc:
            missing = shown(str(exc))
        training = continuous_training(session, model_name, shown)
    return render(request, "monitoring.html", model_name=model_name, tenant=tenant, days=days,
                  history=history, report=report, missing=missing, training=training,
                  drift_chart=spec(drift_chart(history)) if history else None,
                  decay_chart=spec(decay_chart(report)) if report and report.decay.metric
                  else None)


def continuous_training(session: Session, model_name: str, shown: Redact
                        ) -> ContinuousTraining:
    """The model's pipelines, their triggers' states and their latest runs' steps."""
    rows = pipelines.list_pipelines(session, model_name=model_name)
    triggers = [TriggerLine(row.name, state) for row in rows
                for state in triggers_of(row, trigger_states(session, row.name), shown)]
    return ContinuousTraining(pipelines=[r.name for r in rows], triggers=triggers,
                              runs=recent_runs(session, [r.name for r in rows], RUNS_SHOWN,
                                               shown))


def drift_chart(history: DriftHistory) -> Chart:
    """PSI per day of the top features and of the scores; x: days before the last window,
    with the bands' thresholds as reference lines."""
    days = [float(i - len(history.rows) + 1) for i in range(len(history.rows))]
    named = [(f.name, f.psi) for f in history.features] + [("scores", history.prediction_psi)]
    bands = [(f"{band} ({limit})", limit)
             for band, limit in (("moderate", stats.MODERATE), ("major", stats.MAJOR))]
    return _over_time("Drift by day (PSI)", "days ago (0: the last 24 h)", "PSI", days, named,
                      bands)


def decay_chart(report: MonitoringReport) -> Chart:
    """The metric on labelled production rows per window, beside its holdout value."""
    end = report.window_end
    hours = [-(end - w.end).total_seconds() / 3600 for w in report.decay.windows]
    holdout = report.decay.holdout_value
    return _over_time(f"Decay: {report.decay.metric} by window", "hours ago (end of window)",
                      str(report.decay.metric), hours,
                      [(f"{report.decay.metric} on production",
                        [w.value for w in report.decay.windows])],
                      [("holdout", holdout)] if holdout is not None else [])


def _over_time(title: str, x_label: str, y_label: str, x: list[float],
               named: list[tuple[str, list[float | None]]],
               references: list[tuple[str, float]]) -> Chart:
    """Lines where some series has two points or more, each joining the points it has, and
    the references across the span; else bars, since a line of one point draws nothing."""
    if max((sum(v is not None for v in y) for _, y in named), default=0) < 2:
        return Chart(kind="bars", title=title, x_label=x_label, y_label=y_label,
                     series=[Series(name, x, y) for name, y in named])
    series = [_known(name, x, y) for name, y in named]
    series += [Series(name, [x[0], x[-1]], [value, value]) for name, value in references]
    return Chart(kind="line", title=title, x_label=x_label, y_label=y_label, series=series)


def _known(label: str, x: list[float], y: list[float | None]) -> Series:
    """A series of the points that have a value: a day without rows (a window without labels)
    is left out, and the line joins its neighbours."""
    points = [(a, b) for a, b in zip(x, y, strict=True) if b is not None]
    return Series(label, [a for a, _ in points], [b for _, b in points])
