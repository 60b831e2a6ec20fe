"""The shadow report: how each shadow version's scores compare with production's on the same rows.

Per shadow version: rows scored, Pearson correlation of the two scores, agreement at the decision
threshold, the score distribution shift (mean difference, Kolmogorov-Smirnov statistic, PSI of
the shadow scores against production's), on rows whose labels have arrived the ROC AUC of
each, and both score distributions over common bins (what the web UI charts).
"""

from __future__ import annotations

import dataclasses
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


HISTOGRAM_BINS = 20


@dataclasses.dataclass(frozen=True)
class ScoreHistogram:
    """Both versions' scores over the same bins, and the mean shadow score of the rows in each
    bin of production's score (how far the shadow agrees, bin by bin; None: an empty bin)."""

    edges: list[float]  # len(production) + 1
    production: list[int]
    shadow: list[int]
    mean_shadow_by_production: list[float | None]


@dataclasses.dataclass(frozen=True)
class ShadowComparison:
    """One shadow version against the production version that answered the same rows."""

    shadow_version: int
    production_version: int
    rows: int
    correlation: float | None  # None: fewer than two rows, or a constant score
    agreement: float  # share of rows on the same side of the threshold
    mean_production_score: float
    mean_shadow_score: float
    mean_shift: float
    ks: float
    psi: float  # the shadow's scores against production's deciles
    labelled_rows: int
    production_auc: float | None  # None: the labelled rows lack one of the two classes
    shadow_auc: float | None
    histogram: ScoreHistogram


@dataclasses.dataclass(frozen=True)
class ShadowReport:
    model_name: str
    threshold: float
    shadows: list[ShadowComparison]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def histogram(p: np.ndarray[Any, Any], s: np.ndarray[Any, Any],
              bins: int = HISTOGRAM_BINS) -> ScoreHistogram:
    """Both scores over common bins spanning both (0 to 1 for probabilities)."""
    lo, hi = float(min(p.min(), s.min())), float(max(p.max(), s.max()))
    if 0.0 <= lo and hi <= 1.0:
        lo, hi = 0.0, 1.0
    elif hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    where = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    sums = np.bincount(where, weights=s, minlength=bins)
    counts = np.bincount(where, minlength=bins)
    return ScoreHistogram(
        edges=[float(e) for e in edges],
        production=[int(c) for c in np.histogram(p, edges)[0]],
        shadow=[int(c) for c in np.histogram(s, edges)[0]],
        mean_shadow_by_production=[float(t / c) if c else None
                                   for t, c in zip(sums, counts, strict=True)])


def shadow_report(home: Path, model_name: str, threshold: float = 0.5,
                  tenant: str | None = None) -> ShadowReport:
    """Each shadow version's scores against production's on the same logged rows (of one
    tenant, or every tenant), with AUCs on the rows whose labels have arrived."""
    log = _read(model_dir(home / "shadow", model_name))
    report = ShadowReport(model_name=model_name, threshold=threshold, shadows=[])
    if log is None:
        return report
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
        report.shadows.append(_compare(int(version), int(prod_version), part, threshold))
    return report


def _compare(version: int, prod_version: int, part: pd.DataFrame, threshold: float
             ) -> ShadowComparison:
    from sklearn.metrics import roc_auc_score

    p = part["production_score"].to_numpy(float)
    s = part["shadow_score"].to_numpy(float)
    labelled = part.dropna(subset=["label"])
    aucs: tuple[float | None, float | None] = (None, None)
    if labelled["label"].nunique() == 2:
        y = labelled["label"].to_numpy(float)
        aucs = (float(roc_auc_score(y, labelled["production_score"])),
                float(roc_auc_score(y, labelled["shadow_score"])))
    return ShadowComparison(
        shadow_version=version, production_version=prod_version, rows=int(len(part)),
        correlation=float(np.corrcoef(p, s)[0, 1]) if len(part) > 1 and p.std() > 0
        and s.std() > 0 else None,
        agreement=float(np.mean((p >= threshold) == (s >= threshold))),
        mean_production_score=float(p.mean()), mean_shadow_score=float(s.mean()),
        mean_shift=float(s.mean() - p.mean()), ks=ks_statistic(p, s), psi=psi(p, s),
        labelled_rows=int(len(labelled)), production_auc=aucs[0], shadow_auc=aucs[1],
        histogram=histogram(p, s))
