"""What a trained job leaves: its folder of files, and the :class:`JobResult` pointing at them.

The folder (``jobs/<job id>/`` in the artefact store) is written once every step succeeded, and
appears whole or not at all. It holds ``scores.tsv`` and ``labels.tsv`` (one line per holdout
row), ``metrics.json``, ``model.json`` (what serving needs to know: :class:`ModelMeta`),
``profile.json`` (monitoring's reference: :mod:`modelyard.monitoring.profile`) and
``provenance.json``: the request, where the workflow's code came from, package versions, the
data's fingerprint, row counts and step durations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

from modelyard.artifacts import ArtifactStore
from modelyard.monitoring.profile import Profile
from modelyard.protocol.results import JobResult, ModelMeta
from modelyard.request.models import TrainRequest
from modelyard.runtime.workflow import Task

# What a model's bytes may depend on: a replay that trains other bytes names those that differ.
# (XGBoost installs as xgboost or, CPU only, xgboost-cpu.)
_PACKAGES = ("modelyard", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "joblib",
             "threadpoolctl", "lightgbm", "xgboost", "xgboost-cpu", "torch")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Everything a trained job's files and result are made of."""

    job_id: str
    request: TrainRequest
    workflow_source: dict[str, Any]  # runtime.workflow.workflow_source: class, file, commit
    data: dict[str, Any]  # runtime.data.fingerprint: what was read
    row_counts: dict[str, int]
    model_id: str
    task: Task
    missing_values: list[str]  # features with nulls or NaN in the training or holdout rows
    metrics: dict[str, Any]
    scores_tsv: bytes
    labels_tsv: bytes
    by_tenant: dict[str, float | None] | None
    evidence: dict[str, Any]  # runtime.champion.Evidence
    profile: Profile  # monitoring's reference: profile.json
    started_at: dt.datetime
    durations_s: dict[str, float]


def write(store: ArtifactStore, outcome: Outcome) -> JobResult:
    """Write the job's folder in one atomic step; the result says where each file is."""
    request = outcome.request
    record = provenance(outcome)
    model = ModelMeta(
        model_id=outcome.model_id,
        workflow=request.train.workflow_name,
        workflow_class=outcome.workflow_source["class"],
        features=list(request.train.classifier_features),
        label=request.train.label,
        task=outcome.task,
        missing_values=outcome.missing_values,
        importance=dict(outcome.profile.importance),
        importance_method=outcome.profile.importance_method,
    )
    paths = store.write_job_files(
        outcome.job_id,
        {
            "scores.tsv": outcome.scores_tsv,
            "labels.tsv": outcome.labels_tsv,
            "metrics.json": _json(outcome.metrics),
            "provenance.json": _json(record),
            "model.json": _json(dataclasses.asdict(model)),
            "profile.json": json.dumps(outcome.profile.to_json()).encode(),
        },
    )
    return JobResult(
        model_id=outcome.model_id,
        metrics=outcome.metrics,
        evaluation_holdout_data_path=paths["scores.tsv"],
        evaluation_holdout_label_path=paths["labels.tsv"],
        metrics_path=paths["metrics.json"],
        provenance_path=paths["provenance.json"],
        row_counts=outcome.row_counts,
        git_commit=outcome.workflow_source.get("git_commit"),
        workflow_class=model.workflow_class,
        data_digest=outcome.data["digest"],
        model=model,
        by_tenant=outcome.by_tenant,
        evidence=outcome.evidence,
        request_hash=record["request_hash"],
        profile_path=paths["profile.json"],
    )


def provenance(outcome: Outcome) -> dict[str, Any]:
    """Where the model came from: ``provenance.json``."""
    request = outcome.request
    return {
        "job_id": outcome.job_id,
        "request_hash": request.request_hash(),
        "request": request.model_dump(mode="json"),
        "workflow": {"name": request.train.workflow_name, **outcome.workflow_source},
        "packages": {**_package_versions(), **_workflow_package(outcome.workflow_source)},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "data": outcome.data,
        "row_counts": outcome.row_counts,
        "compute_resource": request.compute_resource.value,
        "started_at": outcome.started_at.isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "durations_s": outcome.durations_s,
    }


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()


def _workflow_package(source: dict[str, Any]) -> dict[str, str]:
    """The installed distribution named like the workflow's top package, if there is one (a
    workflow in a file of its own has none: its source sha256 says which code it was)."""
    top = str(source.get("class", "")).split(":")[0].split(".")[0]
    if not top or top == "modelyard":
        return {}
    try:
        return {top: metadata.version(top)}
    except (metadata.PackageNotFoundError, ValueError):
        return {}


@functools.cache
def _package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
