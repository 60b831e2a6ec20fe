"""Whether an event trigger fires now: new data, drift and decay, each with the figures that
decided it.

Each check reads what is already recorded: the registry's newest version and its provenance
(the files and rows it trained on), the source's file listing and parquet footers (never its
rows), and the monitoring report over the production log and stored profiles. A schedule is
not checked here: its due time lives in the trigger's state (:mod:`modelyard.triggers.scheduler`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from modelyard.artifacts import ArtifactStore
from modelyard.errors import NotFound
from modelyard.monitoring.service import monitor
from modelyard.registry import store as registry
from modelyard.registry.stages import GLOBAL_TENANT
from modelyard.request.dates import parse_duration
from modelyard.runtime import data as datamod
from modelyard.settings import Settings
from modelyard.triggers.spec import Decay, Drift, NewData


@dataclasses.dataclass(frozen=True)
class Watched:
    """What a pipeline's triggers watch: its model (a tenant's, for per-tenant triggers) and
    the data its train step reads."""

    pipeline: str
    model_name: str
    tenant: str | None  # None: the model as a whole (the global version, "*")
    data_path: str | None


@dataclasses.dataclass(frozen=True)
class Check:
    """A trigger's verdict: whether it fires, one line why, and the figures behind it (recorded
    in the run it starts and in the trigger's state)."""

    fire: bool
    summary: str
    figures: dict[str, Any]


def check_new_data(session: Session, settings: Settings, watched: Watched, trigger: NewData,
                   now: dt.datetime) -> Check:
    # The global version first: a fleet's tenant versions trained on their partition of the
    # source, not on the source's files.
    latest = registry.latest_version(session, watched.model_name,
                                     tenant=watched.tenant or GLOBAL_TENANT)
    if latest is None and watched.tenant is None:
        latest = registry.latest_version(session, watched.model_name)
    if latest is None:
        return Check(True, f"no version of {watched.model_name!r} has been trained yet",
                     {"trained_at": None})
    figures: dict[str, Any] = {"trained_at": latest.created_at.isoformat(),
                               "version": latest.version}
    reasons = []
    if trigger.every is not None:
        age = now - latest.created_at
        figures["since_training_s"] = round(age.total_seconds())
        if age >= parse_duration(trigger.every):
            reasons.append(f"{_days(age)} since version {latest.version} was trained (every "
                           f"{trigger.every})")
    if (trigger.rows is not None or trigger.files) and watched.data_path is not None:
        trained = _trained_data(settings, latest.job_id)
        source = datamod.resolve_source(watched.data_path, settings.data_roots)
        current = datamod.fingerprint(source, datamod.open_dataset(source))
        if trigger.rows is not None:
            new_rows = (current["total_rows"] or 0) - int(trained.get("total_rows") or 0)
            figures.update(rows_now=current["total_rows"], rows_trained=trained.get("total_rows"),
                           new_rows=new_rows)
            if new_rows >= trigger.rows:
                reasons.append(f"{new_rows:,} new rows in {source.display} (rows: "
                               f"{trigger.rows:,})")
        if trigger.files:
            seen = {f["path"] for f in trained.get("files", [])}
            new_files = sorted(f["path"] for f in current["files"] if f["path"] not in seen)
            figures["new_files"] = [p.rsplit("/", 1)[-1] for p in new_files[:20]]
            if new_files:
                reasons.append(f"{len(new_files):,} new files under {source.display}")
    if reasons:
        return Check(True, "; ".join(reasons), figures)
    return Check(False, f"nothing new since version {latest.version}", figures)


def check_drift(session: Session, settings: Settings, watched: Watched, trigger: Drift,
                now: dt.datetime) -> Check:
    window = parse_duration(trigger.window)
    report = monitor(session, settings, watched.model_name, watched.tenant, window, now=now)
    important = sorted(report.features, key=lambda f: f.importance or 0.0,
                       reverse=True)[:trigger.top_k]
    drifted = [f for f in important if f.psi is not None and f.psi > trigger.psi]
    figures = {"version": report.version, "window": trigger.window, "rows": report.rows,
               "window_start": report.window_start.isoformat(),
               "window_end": report.window_end.isoformat(), "psi_threshold": trigger.psi,
               "features": [{"name": f.name, "psi": f.psi, "importance": f.importance}
                            for f in important]}
    if report.rows < trigger.min_rows:
        return Check(False, f"{report.rows:,} production rows in the last {trigger.window}, "
                     f"under min_rows {trigger.min_rows:,}", figures)
    if not drifted:
        top = max((f.psi or 0.0 for f in important), default=0.0)
        return Check(False, f"the top {len(important)} features' PSI is at most {top:.3f} "
                     f"(threshold {trigger.psi})", figures)
    named = ", ".join(f"{f.name} {f.psi:.3f}" for f in drifted)
    return Check(True, f"PSI above {trigger.psi} over the last {trigger.window} on {named} "
                 f"({report.rows:,} rows, version {report.version})", figures)


def check_decay(session: Session, settings: Settings, watched: Watched, trigger: Decay,
                now: dt.datetime) -> Check:
    window = parse_duration(trigger.window)
    report = monitor(session, settings, watched.model_name, watched.tenant, window, now=now)
    decay = report.decay
    windows = [(w, w.value) for w in decay.windows if w.value is not None]
    figures: dict[str, Any] = {"version": report.version, "window": trigger.window,
                               "metric": decay.metric, "holdout_value": decay.holdout_value,
                               "margin": trigger.margin}
    if not windows or decay.holdout_value is None:
        return Check(False, f"no labelled production rows to measure {decay.metric} on yet",
                     figures)
    latest, value = windows[-1]
    figures.update(value=latest.value, labelled_rows=latest.labelled_rows,
                   window_start=latest.start.isoformat(), window_end=latest.end.isoformat())
    if latest.labelled_rows < trigger.min_labels:
        return Check(False, f"{latest.labelled_rows:,} labelled rows in the latest window, under "
                     f"min_labels {trigger.min_labels:,}", figures)
    drop = (decay.holdout_value - value if decay.higher_is_better
            else value - decay.holdout_value)
    figures["drop"] = drop
    said = (f"{decay.metric} {value:.4f} on {latest.labelled_rows:,} labelled rows against "
            f"{decay.holdout_value:.4f} on version {report.version}'s holdout")
    if drop > trigger.margin:
        return Check(True, f"{said}: down {drop:.4f}, more than margin {trigger.margin}",
                     figures)
    return Check(False, f"{said}: within margin {trigger.margin}", figures)


def _trained_data(settings: Settings, job_id: str | None) -> dict[str, Any]:
    """The data fingerprint the provenance of a version's job recorded (files, total rows);
    empty for a version without one (registered by hand), so all its data counts as new."""
    if not job_id:
        return {}
    try:
        record = ArtifactStore(settings.artifact_root).read_job_json(job_id, "provenance.json")
    except (NotFound, OSError, ValueError):
        return {}
    data = record.get("data") if isinstance(record, dict) else None
    return data if isinstance(data, dict) else {}


def _days(age: dt.timedelta) -> str:
    return f"{age.total_seconds() / 86400:.1f} days"
