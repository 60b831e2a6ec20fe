"""A trained job's evaluation plots, computed from the holdout files its worker stored.

Every succeeded train job leaves ``scores.tsv`` and ``labels.tsv`` (one line per holdout row,
:mod:`modelyard.runtime.job_files`) and ``metrics.json`` (its task, and a binary task's
positive class). The plots are computed from those on request, with scikit-learn's own curve
functions, so they show exactly the rows the metrics were computed on:

- binary: ROC and precision-recall curves, the calibration (reliability) curve, and histograms
  of the scores by class;
- regression: the mean prediction against the actual value (in 50 equal-count bins of it),
  and a histogram of the residuals;
- multi-class: the confusion matrix.

Each curve is cut to at most :data:`MAX_POINTS` points (evenly spaced along it, both ends kept)
so that a page stays light whatever the holdout's size.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Literal

import numpy as np

from modelyard.artifacts import ArtifactStore
from modelyard.errors import Conflict
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow

MAX_POINTS = 200
HISTOGRAM_BINS = 20
CALIBRATION_BINS = 10
REGRESSION_BINS = 50

Task = Literal["binary", "regression", "multiclass"]


@dataclasses.dataclass(frozen=True)
class Curve:
    """A line through points ``(x[i], y[i])``; ``area`` under it where that has a name (the
    ROC's AUC, the PR curve's average precision)."""

    label: str
    x: list[float]
    y: list[float]
    area: float | None = None


@dataclasses.dataclass(frozen=True)
class Histogram:
    """Counts of the values in each bin ``[edges[i], edges[i + 1])`` (the last bin closed)."""

    label: str
    edges: list[float]
    counts: list[int]


@dataclasses.dataclass(frozen=True)
class ConfusionMatrix:
    """``matrix[i][j]``: holdout rows of class ``labels[i]`` predicted as ``labels[j]``."""

    labels: list[str]
    matrix: list[list[int]]


@dataclasses.dataclass(frozen=True)
class JobPlots:
    """What ``GET /jobs/{id}/plots`` answers: the plots that fit the job's task (the others
    are None or empty)."""

    job_id: str
    task: Task
    holdout_rows: int
    positive_class: str | None = None
    roc: Curve | None = None
    precision_recall: Curve | None = None
    calibration: Curve | None = None
    score_histograms: list[Histogram] = dataclasses.field(default_factory=list)
    predicted_vs_actual: Curve | None = None
    residuals: Histogram | None = None
    confusion: ConfusionMatrix | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


def job_plots(artifacts: ArtifactStore, job: JobRow) -> JobPlots:
    """The plots of ``job``'s holdout evaluation.

    Raises:
        Conflict: the job has no evaluation (it has not succeeded, or it is a fleet's parent or
            a pipeline step, which train no model of their own).
        NotFound: its files are missing from the artefact store.
    """
    if job.state != JobState.succeeded.value or not job.result or "model_id" not in job.result:
        raise Conflict(_no_evaluation(job))
    import pandas as pd

    metrics: dict[str, Any] = artifacts.read_job_json(job.id, "metrics.json")
    scores = pd.read_csv(io.BytesIO(artifacts.read_job_file(job.id, "scores.tsv")), sep="\t")
    labels = pd.read_csv(io.BytesIO(artifacts.read_job_file(job.id, "labels.tsv")), sep="\t",
                         dtype=str, keep_default_na=False)["label"].to_numpy()
    task: Task = metrics.get("task", "binary")
    base = JobPlots(job_id=job.id, task=task, holdout_rows=len(labels))
    if len(labels) == 0:
        return dataclasses.replace(base, notes=["the holdout is empty: nothing to plot"])
    if task == "regression":
        return _regression(base, labels.astype(float), scores.iloc[:, 0].to_numpy(dtype=float))
    if task == "multiclass":
        return _multiclass(base, labels, scores)
    positive = str(metrics.get("positive_class", "1"))
    return _binary(dataclasses.replace(base, positive_class=positive), labels,
                   scores.iloc[:, 0].to_numpy(dtype=float))


def _no_evaluation(job: JobRow) -> str:
    if job.kind == "fleet":
        return (f"job {job.id} is a fleet: its models are its children's; list them with "
                f"GET /jobs?parent_id={job.id} and ask for their plots")
    if job.kind == "step":
        return f"job {job.id} is a pipeline step: it trains no model, so it has no plots"
    if not JobState(job.state).terminal:
        return (f"job {job.id} is {job.state}; its plots come from its holdout evaluation, "
                "written when it succeeds")
    return (f"job {job.id} ended {job.state} without a holdout evaluation; its plots exist "
            "only for a succeeded job")


def _binary(base: JobPlots, labels: np.ndarray[Any, Any], p: np.ndarray[Any, Any]
            ) -> JobPlots:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    positive = base.positive_class or "1"
    y = (labels == positive).astype(int)
    others = sorted(set(labels.tolist()) - {positive})
    negative = others[0] if len(others) == 1 else f"not {positive}"
    notes: list[str] = []
    roc = pr = calibration = None
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        roc = _curve("ROC", fpr, tpr, area=_auc(fpr, tpr))
        precision, recall, _ = precision_recall_curve(y, p)
        pr = _curve("precision-recall", recall, precision,
                    area=float(average_precision_score(y, p)))
    else:
        notes.append("the holdout holds one class only: no ROC or precision-recall curve")
    if np.all((p >= 0) & (p <= 1)):
        observed, predicted = calibration_curve(y, p, n_bins=CALIBRATION_BINS)
        calibration = _curve("calibration", predicted, observed)
        edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    else:
        notes.append("scores are not probabilities: no calibration curve")
        edges = np.histogram_bin_edges(p, bins=HISTOGRAM_BINS)
    histograms = [_histogram(f"label {name}", p[y == cls], edges)
                  for cls, name in ((0, negative), (1, positive))]
    return dataclasses.replace(base, roc=roc, precision_recall=pr, calibration=calibration,
                               score_histograms=histograms, notes=notes)


def _regression(base: JobPlots, actual: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]
                ) -> JobPlots:
    # The mean prediction in each of equal-count bins of the actual value: a scatter of every
    # row says less, and draws slower, than the line it scatters around.
    order = np.argsort(actual, kind="mergesort")
    bins = np.array_split(order, min(REGRESSION_BINS, len(order)))
    residuals = actual - predicted
    return dataclasses.replace(
        base,
        predicted_vs_actual=Curve(
            "mean predicted, by bins of the actual value",
            [float(actual[b].mean()) for b in bins], [float(predicted[b].mean()) for b in bins]),
        residuals=_histogram("residual (actual - predicted)", residuals,
                             np.histogram_bin_edges(residuals, bins=HISTOGRAM_BINS)))


def _multiclass(base: JobPlots, labels: np.ndarray[Any, Any], scores: Any) -> JobPlots:
    from sklearn.metrics import confusion_matrix

    classes = [str(c).removeprefix("score_") for c in scores.columns]
    predicted = np.asarray(classes)[scores.to_numpy(dtype=float).argmax(axis=1)]
    matrix = confusion_matrix(labels, predicted, labels=classes)
    return dataclasses.replace(base, confusion=ConfusionMatrix(
        labels=classes, matrix=[[int(v) for v in row] for row in matrix]))


def _evenly(n: int, most: int) -> np.ndarray[Any, Any]:
    """Indices of at most ``most`` of ``n`` points, evenly spaced, first and last included."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def _curve(label: str, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
           area: float | None = None) -> Curve:
    keep = _evenly(len(x), MAX_POINTS)
    return Curve(label, _floats(x[keep]), _floats(y[keep]), area)


def _histogram(label: str, values: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]
               ) -> Histogram:
    counts, _ = np.histogram(values, bins=edges)
    return Histogram(label, _floats(edges), [int(c) for c in counts])


def _auc(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    from sklearn.metrics import auc

    return float(auc(x, y))


def _floats(values: np.ndarray[Any, Any]) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float)]
