"""Decay: the monitored version's metric on labelled production rows, window by window.

Labels (``POST /labels``, stored under ``HOME/labels/``) join the production log's rows by
``(request_id, row)``; the latest label of a row counts. The metric is the one fleets graduate
on (ROC AUC for a binary task, RMSE for a regression); a multi-class version has none, since the
log holds one score per row.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from modelyard.monitoring.report import Decay, DecayWindow
from modelyard.protocol.results import GRADUATION_METRIC
from modelyard.serving.shadow_log import model_dir

DECAY_WINDOWS = 7  # the monitoring window is cut into this many, oldest first


def read_labels(home: Path, model_name: str) -> pd.DataFrame | None:
    """The model's labels, the latest per ``(request_id, row)``."""
    folder = model_dir(home / "labels", model_name)
    files = sorted(str(p) for p in folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    labels = ds.dataset(files, format="parquet").to_table().to_pandas()
    return labels.sort_values("at").drop_duplicates(["request_id", "row"], keep="last")


def decay(log: pd.DataFrame | None, labels: pd.DataFrame | None, *, task: str,
          holdout_metrics: dict[str, Any], start: dt.datetime, end: dt.datetime) -> Decay:
    """The metric of ``log``'s scores (one version's rows) against their labels, per window."""
    metric, higher = GRADUATION_METRIC.get(task, (None, True))
    if task == "multiclass":
        metric = None
    holdout = holdout_metrics.get(metric) if metric is not None else None
    bounds = [start + (end - start) * i / DECAY_WINDOWS for i in range(DECAY_WINDOWS + 1)]
    joined = None
    if log is not None and labels is not None and len(log):
        joined = log[["request_id", "row", "at", "score"]].merge(
            labels[["request_id", "row", "label"]], on=["request_id", "row"], how="inner")
    windows = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        part = None if joined is None else joined[(joined["at"] >= lo) & (joined["at"] < hi)]
        rows = 0 if part is None else len(part)
        value = _metric(metric, part) if part is not None and rows else None
        windows.append(DecayWindow(start=lo, end=hi, labelled_rows=rows, value=value))
    return Decay(metric=metric, holdout_value=holdout if isinstance(holdout, float) else None,
                 higher_is_better=higher, windows=windows)


def _metric(metric: str | None, part: pd.DataFrame) -> float | None:
    y = part["label"].to_numpy(dtype=float)
    s = part["score"].to_numpy(dtype=float)
    if metric == "rmse":
        return float(np.sqrt(np.mean((y - s) ** 2)))
    if metric == "roc_auc":
        from sklearn.metrics import roc_auc_score

        if len(np.unique(y)) != 2:
            return None  # undefined on one class
        return float(roc_auc_score(y, s))
    return None
