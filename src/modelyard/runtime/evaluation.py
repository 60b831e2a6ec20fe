"""Holdout evaluation: the task a label implies, the metrics for it, and the scores/labels files.

Binary: ROC AUC, PR AUC (average precision), log loss, Brier score, accuracy at 0.5.
Regression: RMSE, MAE, R2. Multi-class: accuracy, log loss, macro F1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import DataError, WorkflowError
from modelyard.runtime.workflow import Task


def infer_task(label: pd.Series) -> Task:
    """Binary for two classes (bool, 0/1, two strings), multi-class for more strings, else
    regression."""
    values = label.dropna()
    if pd.api.types.is_bool_dtype(values):
        return "binary"
    if not pd.api.types.is_numeric_dtype(values):
        return "binary" if values.nunique() <= 2 else "multiclass"
    if values.nunique() <= 2 and set(np.unique(values)).issubset({0, 1}):
        return "binary"
    return "regression"


def check_label(train: pd.DataFrame, label: str, task: Task) -> None:
    """A label that never varies in the training rows cannot be learnt: say so before training."""
    y = train[label]
    if y.isna().all():
        raise DataError(f"label {label!r} is empty (all null) in the training rows")
    distinct = [v.item() if hasattr(v, "item") else v for v in y.dropna().unique()]
    if len(distinct) < 2:
        kind = "classification needs at least two classes" if task != "regression" else (
            "a constant target cannot be learnt"
        )
        raise DataError(
            f"label {label!r} has a single value ({distinct[0]!r}) in all {len(y):,} training "
            f"rows; {kind}; widen the filters or the training date range"
        )


def positive_class(model: Any, y: pd.Series) -> Any:
    classes = getattr(model, "classes_", None)
    if classes is not None and len(classes) == 2:
        return classes[1]
    distinct = sorted(y.dropna().unique().tolist())
    return distinct[-1] if distinct else 1


def compute_metrics(
    task: Task, y_true: pd.Series, scores: np.ndarray[Any, Any], model: Any
) -> dict[str, Any]:
    """Metrics of ``scores`` against ``y_true``; an undefined metric is ``None``, with a note."""
    import sklearn

    # Inputs are ours and already checked: skip scikit-learn's per-call parameter validation.
    with sklearn.config_context(skip_parameter_validation=True):
        return _metrics(task, y_true, scores, model)


def _metrics(
    task: Task, y_true: pd.Series, scores: np.ndarray[Any, Any], model: Any
) -> dict[str, Any]:
    from sklearn import metrics as skm

    scores = np.asarray(scores)
    if len(scores) != len(y_true):
        raise WorkflowError(
            f"predict returned {len(scores)} scores for {len(y_true)} holdout rows; "
            "it must return one score per row"
        )
    out: dict[str, Any] = {"task": task, "holdout_rows": int(len(y_true)), "notes": []}
    if task == "regression":
        y = y_true.to_numpy(dtype=float)
        s = scores.astype(float).reshape(-1)
        out.update(
            rmse=float(math.sqrt(skm.mean_squared_error(y, s))),
            mae=float(skm.mean_absolute_error(y, s)),
            r2=float(skm.r2_score(y, s)) if len(y) > 1 else None,
        )
        return out
    if task == "multiclass":
        classes = getattr(model, "classes_", None)
        if scores.ndim != 2 or classes is None:
            raise WorkflowError(
                "a multi-class workflow's predict must return one probability per class "
                "(an n_rows x n_classes array) and its model must have classes_"
            )
        predicted = np.asarray(classes)[scores.argmax(axis=1)]
        out.update(
            accuracy=float(skm.accuracy_score(y_true, predicted)),
            f1_macro=float(skm.f1_score(y_true, predicted, average="macro")),
            log_loss=float(skm.log_loss(y_true, scores, labels=classes)),
        )
        return out
    pos = positive_class(model, y_true)
    y = (y_true == pos).to_numpy(dtype=int)
    p = scores.astype(float).reshape(-1)
    out["positive_class"] = pos.item() if hasattr(pos, "item") else pos
    out["positive_rate"] = float(y.mean()) if len(y) else None
    out["accuracy"] = float(((p >= 0.5).astype(int) == y).mean())
    # The binary metrics in numpy: the same numbers as sklearn's (tests check), without its
    # per-call input checks, which cost more than the metrics on the small holdouts of a fleet.
    if np.all((p >= 0) & (p <= 1)):
        q = np.clip(p, 1e-15, 1 - 1e-15)
        out["brier"] = float(np.mean((p - y) ** 2))
        out["log_loss"] = float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    else:
        out["brier"] = out["log_loss"] = None
        out["notes"].append("scores are not probabilities: brier and log_loss not computed")
    if len(np.unique(y)) == 2:
        order, ranks = ranked(p)  # one sort serves both
        out["roc_auc"] = roc_auc(y, p, ranks)
        out["pr_auc"] = average_precision(y, p, order)
    else:
        out["roc_auc"] = out["pr_auc"] = None
        out["notes"].append("the holdout holds one class only: roc_auc and pr_auc are undefined")
    return out


def ranked(p: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """One stable sort of the scores: the ascending order, and tie-averaged ranks (1-based)."""
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_p)) + 1]
    ends = np.r_[starts[1:], len(p)]
    average = (starts + ends + 1) / 2.0  # the mean of ranks start+1 .. end
    ranks = np.empty(len(p), dtype=float)
    ranks[order] = np.repeat(average, ends - starts)
    return order, ranks


def roc_auc(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any],
            ranks: np.ndarray[Any, Any] | None = None) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties share their average rank)."""
    if ranks is None:
        ranks = ranked(p)[1]
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any],
                      order: np.ndarray[Any, Any] | None = None) -> float:
    """Average precision: sum over score thresholds of (recall step) x precision, as sklearn."""
    if order is None:
        order = np.argsort(p, kind="mergesort")
    order = order[::-1]  # descending; the order within a tie does not matter below
    y_sorted, p_sorted = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]  # end of each tie run
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def scores_tsv(scores: np.ndarray[Any, Any], classes: Any = None) -> bytes:
    """One line per holdout row, in holdout order, with a header."""
    scores = np.asarray(scores)
    if scores.ndim == 2:
        names = [f"score_{c}" for c in (classes if classes is not None else range(scores.shape[1]))]
        lines = ["\t".join(names)] + ["\t".join(map(_num, row)) for row in scores.tolist()]
        return ("\n".join(lines) + "\n").encode()
    # One column: pyarrow's CSV writer (shortest round-trip floats) formats a large holdout in
    # C rather than value by value in Python.
    import pyarrow as pa
    import pyarrow.csv as pacsv

    buf = pa.BufferOutputStream()
    pacsv.write_csv(pa.table({"score": scores.astype(float)}), buf,
                    pacsv.WriteOptions(include_header=False, quoting_style="none"))
    body: bytes = buf.getvalue().to_pybytes()
    return b"score\n" + body


def labels_tsv(labels: pd.Series) -> bytes:
    return ("\n".join(["label", *map(str, labels.to_numpy().tolist())]) + "\n").encode()


def _num(value: Any) -> str:
    # An f-string per value: cheaper than DataFrame.to_csv for the few columns of class scores.
    return "" if value is None or value != value else f"{value:.10g}"
