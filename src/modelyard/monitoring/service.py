"""Monitoring one (model, tenant) over a time window: :func:`monitor`, for the route and the
scheduler.

The version monitored is the one serving answers the tenant with (its own production version,
else its segment's, else the global one). Current traffic is the production log's rows of the
window for that tenant (``tenant`` as asked; without one, every row the answering version's
registry tenant served), or a parquet file of recent traffic under the data roots. Each is
compared with the version's reference profile (``profile.json`` of the job that trained it);
the training data is never read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session

from modelyard.artifacts import ArtifactStore
from modelyard.errors import NotFound
from modelyard.monitoring import decay as decays
from modelyard.monitoring import stats
from modelyard.monitoring.profile import Kind, Profile, column_kinds
from modelyard.monitoring.report import (
    FeatureDrift,
    MonitoringReport,
    PredictionDrift,
    Staleness,
)
from modelyard.registry import store as registry
from modelyard.registry.stages import GLOBAL_TENANT
from modelyard.registry.tables import VersionRow
from modelyard.serving import production_log
from modelyard.settings import Settings

_DAY_S = 86_400.0


def monitor(session: Session, settings: Settings, model_name: str, tenant: str | None,
            window: dt.timedelta, *, now: dt.datetime | None = None,
            traffic: str | None = None) -> MonitoringReport:
    """Drift, decay and staleness of the version that serves ``tenant``, over ``window`` up to
    ``now`` (default: the current time).

    Raises:
        NotFound: no production version answers the tenant, or it has no profile.
        DataAccessDenied, DataError: ``traffic`` lies outside the data roots or cannot be read.
    """
    end = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    start = end - window
    row, served_by = registry.serving_version(session, model_name, tenant)
    profile = read_profile(settings, row)
    log = _of_tenant(production_log.read_window(settings.home, model_name, start, end),
                     tenant, served_by)
    if traffic is not None:
        current, kinds, source = _traffic(traffic, settings, profile)
    else:
        current, kinds = _logged_features(log)
        source = "production log"
    ours = None if log is None else log.filter(pc.equal(log["model_id"], row.model_id))
    ours_frame = None if ours is None else ours.select(
        ["request_id", "row", "at", "score"]).to_pandas()
    return MonitoringReport(
        model_name=model_name, tenant=tenant, served_by_tenant=served_by,
        version=row.version, model_id=row.model_id, source=source, window_start=start,
        window_end=end, rows=len(current),
        features=feature_drift(profile, current),
        prediction=prediction_drift(profile, ours_frame),
        schema_changes=stats.schema_changes(profile, kinds) if kinds else [],
        decay=decays.decay(ours_frame, decays.read_labels(settings.home, model_name),
                           task=str(row.model_meta.get("task", "")),
                           holdout_metrics=row.metrics, start=start, end=end),
        staleness=staleness(row, profile, end),
        importance_method=profile.importance_method,
    )


def read_profile(settings: Settings, row: VersionRow) -> Profile:
    """A version's reference profile, from the files of the job that trained it.

    Raises:
        NotFound: the version has no profile (trained before profiles were kept).
    """
    try:
        if row.job_id is None:
            raise NotFound("no job")
        return Profile.from_json(ArtifactStore(settings.artifact_root).read_job_json(
            row.job_id, "profile.json"))
    except NotFound:
        raise NotFound(
            f"version {row.version} of {row.model_name!r} (tenant {row.tenant!r}) has no "
            "reference profile: it was trained before profiles were kept; retrain it to "
            "monitor it") from None


def feature_drift(profile: Profile, current: pd.DataFrame) -> list[FeatureDrift]:
    """Each profiled feature's shift in ``current``, by drift x importance, highest first.
    Features absent from ``current`` (schema changes) or without values there are left out."""
    out = []
    for feature in profile.features:
        if feature.kind == "other" or feature.name not in current.columns or not len(current):
            continue
        values = current[feature.name]
        shift = stats.feature_shift(feature, values)
        if shift is None:
            continue
        importance = profile.importance.get(feature.name, 0.0)
        out.append(FeatureDrift(
            name=feature.name, kind=feature.kind, psi=shift.psi, band=stats.band(shift.psi),
            ks_statistic=shift.ks_statistic, ks_pvalue=shift.ks_pvalue,
            null_rate_reference=feature.null_rate,
            null_rate_current=shift.nulls / (shift.nulls + shift.values),
            importance=importance, rank_score=shift.psi * importance))
    return sorted(out, key=lambda f: (-f.rank_score, -f.psi, f.name))


def prediction_drift(profile: Profile, scored: pd.DataFrame | None) -> PredictionDrift | None:
    """The monitored version's logged scores against its holdout's (None without either)."""
    if profile.score is None or scored is None or not len(scored):
        return None
    shift = stats.number_shift(profile.score, scored["score"].to_numpy(dtype=float))
    if shift is None or shift.ks_statistic is None or shift.mean is None:
        return None
    return PredictionDrift(psi=shift.psi, band=stats.band(shift.psi),
                           ks_statistic=shift.ks_statistic, mean_reference=profile.score.mean,
                           mean_current=shift.mean, rows=shift.values)


def staleness(row: VersionRow, profile: Profile, now: dt.datetime) -> Staleness:
    trained = row.created_at.astimezone(dt.UTC)
    newest = profile.newest_training_row
    return Staleness(
        trained_at=trained, model_age_days=(now - trained).total_seconds() / _DAY_S,
        newest_training_row=newest,
        newest_training_row_age_days=(now - newest).total_seconds() / _DAY_S
        if newest is not None else None)


def _of_tenant(log: pa.Table | None, tenant: str | None, served_by: str) -> pa.Table | None:
    """The log's rows of the tenant as asked, or (none asked, or the global model's ``*``)
    those the version's registry tenant answered."""
    if log is None:
        return None
    if tenant is not None and tenant != GLOBAL_TENANT:
        return log.filter(pc.equal(log["tenant"], tenant))
    return log.filter(pc.equal(log["served_by_tenant"], served_by))


def _logged_features(log: pa.Table | None) -> tuple[pd.DataFrame, dict[str, Kind]]:
    if log is None or log.num_rows == 0:
        return pd.DataFrame(), {}
    names = production_log.features_of(log)
    frame = log.select([production_log.FEATURE_PREFIX + n for n in names]).to_pandas()
    frame.columns = names
    return frame, column_kinds(frame)


def _traffic(path: str, settings: Settings, profile: Profile
             ) -> tuple[pd.DataFrame, dict[str, Kind], str]:
    """The profiled features of a traffic file, its columns' kinds, and its name."""
    from modelyard.runtime import data

    source = data.resolve_source(path, settings.data_roots)
    dataset = data.open_dataset(source)
    kinds = column_kinds(dataset.schema.empty_table().to_pandas())
    wanted = [f.name for f in profile.features if f.name in kinds]
    if not wanted:
        return pd.DataFrame(), kinds, source.display
    frame = data.to_frame(data.scan(dataset, wanted, None))
    return frame, kinds, source.display


def report_json(report: MonitoringReport) -> dict[str, Any]:
    """The report as the route answers it."""
    out = report.to_json()
    out["bands"] = {"moderate": stats.MODERATE, "major": stats.MAJOR}
    return out

