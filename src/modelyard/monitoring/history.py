"""Drift over time: :func:`drift_history` runs :func:`~modelyard.monitoring.service.monitor`
once per window (a day, by default, over the last two weeks), so each point is exactly what
``GET /models/{name}/monitoring`` answers for that window, and keeps the PSI of the features
that drifted most, weighted by importance, in any window.

Each window reads its slice of the production log and the version's profile again; the number
of windows is capped (:data:`MAX_WINDOWS`) so one request cannot read the log for months.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy.orm import Session

from modelyard.errors import RequestError
from modelyard.monitoring.report import MonitoringReport
from modelyard.monitoring.service import monitor
from modelyard.settings import Settings

MAX_WINDOWS = 31
TOP_FEATURES = 5


@dataclasses.dataclass(frozen=True)
class FeatureHistory:
    name: str
    importance: float
    psi: list[float | None]  # per window, oldest first; None: no rows in that window


@dataclasses.dataclass(frozen=True)
class DriftHistory:
    model_name: str
    tenant: str | None
    version: int  # the version that serves the tenant now (each window monitors it)
    window_starts: list[dt.datetime]  # oldest first
    window_ends: list[dt.datetime]
    rows: list[int]  # production rows per window
    prediction_psi: list[float | None]  # the version's scores against its holdout's
    features: list[FeatureHistory]  # the top features, by their largest psi x importance

    @property
    def has_traffic(self) -> bool:
        return any(self.rows)


def drift_history(session: Session, settings: Settings, model_name: str, tenant: str | None,
                  *, windows: int = 14, width: dt.timedelta = dt.timedelta(days=1),
                  top: int = TOP_FEATURES, now: dt.datetime | None = None) -> DriftHistory:
    """Feature and prediction drift of the version that serves ``tenant``, window by window up
    to ``now``.

    Raises:
        RequestError: ``windows`` is not between 1 and :data:`MAX_WINDOWS`.
        NotFound: no production version answers the tenant, or it has no profile.
    """
    if not 1 <= windows <= MAX_WINDOWS:
        raise RequestError(f"windows: {windows} is out of range; ask for 1 to {MAX_WINDOWS} "
                           "windows")
    end = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    reports = [monitor(session, settings, model_name, tenant, width,
                       now=end - width * (windows - 1 - i)) for i in range(windows)]
    return DriftHistory(
        model_name=model_name, tenant=tenant, version=reports[-1].version,
        window_starts=[r.window_start for r in reports],
        window_ends=[r.window_end for r in reports], rows=[r.rows for r in reports],
        prediction_psi=[r.prediction.psi if r.prediction else None for r in reports],
        features=_top_features(reports, top))


def _top_features(reports: list[MonitoringReport], top: int) -> list[FeatureHistory]:
    best: dict[str, float] = {}
    importance: dict[str, float] = {}
    for report in reports:
        for f in report.features:
            best[f.name] = max(best.get(f.name, 0.0), f.rank_score)
            importance[f.name] = f.importance
    chosen = sorted(best, key=lambda n: (-best[n], -importance[n], n))[:top]
    by_window = [{f.name: f.psi for f in r.features} for r in reports]
    return [FeatureHistory(name=n, importance=importance[n],
                           psi=[w.get(n) for w in by_window]) for n in chosen]
