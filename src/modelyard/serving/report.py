"""The shadow report: how each shadow version's scores compare with production's on the same rows.

Per shadow version: rows scored, Pearson correlation of the two scores, agreement at the decision
threshold, the score distribution shift (mean difference, Kolmogorov-Smirnov statistic, PSI of
the shadow scores against production's), and, on rows whose labels have arrived, the ROC AUC of
each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from modelyard.serving.shadow_log import model_dir


def _read(folder: Path) -> pd.DataFrame | None:
    if not folder.exists() or not any(folder.rglob("*.parquet")):
        return None
    files = sorted(str(p) for p in folder.rglob("part-*.parquet"))
    return ds.dataset(files, format="parquet").to_table().to_pandas()


def ks_statistic(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """Largest distance between the two empirical CDFs."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def psi(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any], bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``'s decile bins."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-6, None), np.clip(a, 1e-6, None)
    return float(np.sum((a - e) * np.log(a / e)))


def shadow_report(home: Path, model_name: str, threshold: float = 0.5,
                  tenant: str | None = None) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    log = _read(model_dir(home / "shadow", model_name))
    out: dict[str, Any] = {"model_name": model_name, "threshold": threshold, "shadows": []}
    if log is None:
        return out
    if tenant is not None:
        log = log[log["tenant"] == tenant]
    labels = _read(model_dir(home / "labels", model_name))
    if labels is not None:
        labels = labels.sort_values("at").drop_duplicates(["request_id", "row"], keep="last")
        log = log.merge(labels[["request_id", "row", "label"]], on=["request_id", "row"],
                        how="left")
    else:
        log = log.assign(label=np.nan)
    for (version, prod_version), part in log.groupby(["shadow_version", "production_version"]):
        p = part["production_score"].to_numpy(float)
        s = part["shadow_score"].to_numpy(float)
        entry: dict[str, Any] = {
            "shadow_version": int(version), "production_version": int(prod_version),
            "rows": int(len(part)),
            "correlation": float(np.corrcoef(p, s)[0, 1]) if len(part) > 1 and p.std() > 0
            and s.std() > 0 else None,
            "agreement": float(np.mean((p >= threshold) == (s >= threshold))),
            "mean_production_score": float(p.mean()), "mean_shadow_score": float(s.mean()),
            "mean_shift": float(s.mean() - p.mean()),
            "ks": ks_statistic(p, s), "psi": psi(p, s),
        }
        labelled = part.dropna(subset=["label"])
        entry["labelled_rows"] = int(len(labelled))
        if labelled["label"].nunique() == 2:
            y = labelled["label"].to_numpy(float)
            entry["production_auc"] = float(roc_auc_score(y, labelled["production_score"]))
            entry["shadow_auc"] = float(roc_auc_score(y, labelled["shadow_score"]))
        else:
            entry["production_auc"] = entry["shadow_auc"] = None
        out["shadows"].append(entry)
    return out
