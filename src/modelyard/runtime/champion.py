"""The evidence promotion rules decide on, measured in the worker on the candidate's holdout.

Every trained model reports its holdout's size (rows, and positives for a binary task), its
latency per row (its ``predict`` on the whole holdout, divided by the rows), and, when its
(model, tenant) has a production version, that version's metrics on the *same rows*: the worker
loads production (:func:`~modelyard.runtime.trained.load_trained`, as serving does) and scores
the holdout it just scored the candidate on. So a weekly retrain, whose holdout window always
differs from production's, is still compared like for like. It also reports the shift of the
candidate's scores from production's on those rows (PSI).

A production version that cannot score the rows (a column it needs is not in the holdout, its
workflow is no longer allowed, its file is gone) does not fail the job: the evidence says why
there is no comparison, and a rule that needs one refuses to promote with that reason.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelyard.artifacts import ArtifactStore
from modelyard.protocol.events import Champion
from modelyard.runtime import evaluation, fastpath
from modelyard.runtime.trained import load_trained
from modelyard.runtime.workflow import Task

PSI_BINS = 10
_PSI_FLOOR = 1e-4  # a bin's share is at least this, so an empty bin is not an infinite shift


@dataclass(frozen=True)
class Evidence:
    holdout_rows: int
    holdout_positives: int | None  # binary tasks
    latency_ms_per_row: float | None
    # The production version scored on the same rows: version_id, version, model_id, metrics,
    # score_psi (None when the task's scores are not one number per row).
    champion: dict[str, Any] | None = None
    champion_error: str | None = None  # why production could not be scored on the rows

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def timed_predict(predict: Any, model: Any, frame: pd.DataFrame) -> tuple[Any, float]:
    """``predict(model, frame)`` and its wall time in seconds."""
    started = time.perf_counter()
    scores = predict(model, frame)
    return scores, time.perf_counter() - started


def measure(task: Task, label: pd.Series, model: Any, seconds: float) -> Evidence:
    """The candidate's own evidence: holdout rows, positives, latency per row."""
    rows = len(label)
    positives = None
    if task == "binary":
        positive = evaluation.positive_class(model, label)
        positives = int((label == positive).sum())
    latency = round(seconds * 1000 / rows, 6) if rows else None
    return Evidence(rows, positives, latency)


def against_production(evidence: Evidence, champion: Champion, spec_store: ArtifactStore,
                       allowed: tuple[tuple[str, ...], tuple[str, ...]], task: Task,
                       holdout: pd.DataFrame, label: pd.Series,
                       scores: np.ndarray[Any, Any]) -> Evidence:
    """``evidence`` with production's metrics on the same rows, or the reason there are none.

    Args:
        allowed: the operator's workflow modules and packages (production's workflow loads
            from what the operator allows, as in serving).
    """
    try:
        trained = load_trained(spec_store, champion.model_id, champion.job_id, *allowed)
        fastpath.accelerate(trained.model)  # as the candidate's: the same scores, sooner
        theirs = np.asarray(trained.workflow.predict(trained.model, holdout))
        metrics = evaluation.compute_metrics(task, label, theirs, trained.model)
    except Exception as exc:  # whatever it is, the candidate stands; the rules see why
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        reason = (f"production version {champion.version} could not score the candidate's "
                  f"holdout rows ({type(exc).__name__}: {first})")
        return Evidence(**{**asdict(evidence), "champion_error": reason})
    return Evidence(**{**asdict(evidence), "champion": {
        "version_id": champion.version_id, "version": champion.version,
        "model_id": champion.model_id, "metrics": metrics,
        "score_psi": score_psi(theirs, np.asarray(scores)),
    }})


def score_psi(reference: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> float | None:
    """The population stability index of ``scores`` against ``reference`` (production's), on
    ``PSI_BINS`` quantile bins of the reference; None unless both are one number per row."""
    if reference.ndim != 1 or scores.ndim != 1 or len(reference) == 0 or len(scores) == 0:
        return None
    ref, new = reference.astype(float), scores.astype(float)
    ref, new = ref[np.isfinite(ref)], new[np.isfinite(new)]
    if len(ref) == 0 or len(new) == 0:
        return None
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, ref, side="right"),
                           minlength=len(edges) + 1) / len(ref)
    actual = np.bincount(np.searchsorted(edges, new, side="right"),
                         minlength=len(edges) + 1) / len(new)
    expected, actual = np.maximum(expected, _PSI_FLOOR), np.maximum(actual, _PSI_FLOOR)
    return round(float(np.sum((actual - expected) * np.log(actual / expected))), 6)
