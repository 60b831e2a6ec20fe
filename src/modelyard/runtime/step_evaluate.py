"""A pipeline's ``evaluate`` step inside the worker: a trained version scored on extra sets.

The version is loaded as it trained (:func:`~modelyard.runtime.trained.load_trained`: its
verified bytes and its workflow's code snapshot); each set is read from under the data roots,
filtered, and scored with the workflow's ``predict``. Every set gets the task's standard metrics
(:mod:`~modelyard.runtime.evaluation`) and, for a binary model, the business metrics asked for:
recall at a fixed false-positive rate, and precision among the k highest scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.artifacts import ArtifactStore
from modelyard.errors import DataError, RequestError
from modelyard.pipelines.blocks import EvaluateParams, EvaluationSet
from modelyard.runtime import data, evaluation, filters
from modelyard.runtime.trained import TrainedVersion, load_trained


@dataclass(frozen=True)
class ModelRef:
    """Where a version's model is: its content address and the job that trained it."""

    model_id: str
    job_id: str
    source: str  # what named it, for messages


def find_model(params: EvaluateParams, inputs: Mapping[str, Any]) -> ModelRef:
    """The version to evaluate, from the step's inputs.

    ``inputs["model"]`` (the server resolves ``model_name``/``version`` there), else the
    outputs of the step ``model_from`` names, else the one input step whose outputs hold a
    ``model_id`` and a ``job_id``.

    Raises:
        RequestError: no such model in the inputs, or more than one to choose from.
    """
    if params.model_name is not None:
        where, found = "model", inputs.get("model")
        return _ref(found, f"{params.model_name} version {params.version}", where)
    if params.model_from is not None:
        return _ref(inputs.get(params.model_from), f"step {params.model_from!r}", "model_from")
    trained = [name for name, out in inputs.items() if isinstance(out, Mapping)
               and "model_id" in out and "job_id" in out]
    if len(trained) != 1:
        raise RequestError(
            f"with.model_from: the evaluate step needs one model, and the steps it needs "
            f"trained {len(trained)} ({', '.join(trained) or 'none'}); name the train step "
            "with model_from, or give model_name and version")
    return _ref(inputs[trained[0]], f"step {trained[0]!r}", "model_from")


def _ref(found: Any, what: str, field: str) -> ModelRef:
    if not isinstance(found, Mapping) or not found.get("model_id") or not found.get("job_id"):
        raise RequestError(f"with.{field}: {what} gave the evaluate step no model (its outputs "
                           "have no model_id and job_id); evaluate the output of a train step "
                           "or a registered version")
    return ModelRef(str(found["model_id"]), str(found["job_id"]), what)


def evaluate(params: EvaluateParams, ref: ModelRef, trained: TrainedVersion,
             data_roots: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Metrics per set name: the standard ones and the business metrics asked for."""
    return {s.name: _score_set(params, s, trained, data_roots) for s in params.sets}


def load(store: ArtifactStore, ref: ModelRef, workflow_modules: tuple[str, ...],
         workflow_packages: tuple[str, ...]) -> TrainedVersion:
    return load_trained(store, ref.model_id, ref.job_id, workflow_modules, workflow_packages)


def _score_set(params: EvaluateParams, one: EvaluationSet, trained: TrainedVersion,
               data_roots: Sequence[str]) -> dict[str, Any]:
    request = trained.workflow.request
    label = request.train.label
    source = data.resolve_source(one.path, data_roots)
    dataset = data.open_dataset(source)
    columns = request.columns()
    missing = [c for c in [*columns, *(f.feature_name for f in one.filters)]
               if c not in dataset.schema.names]
    if missing:
        raise DataError(f"evaluation set {one.name!r} ({one.path}): no column "
                        f"{', '.join(map(repr, dict.fromkeys(missing)))}; the model reads "
                        f"{', '.join(columns)}")
    expr = filters.build_filter(one.filters, dataset.schema)
    frame = data.to_frame(data.scan(dataset, columns, expr))
    if frame.empty:
        raise DataError(f"evaluation set {one.name!r} ({one.path}) has no rows after its "
                        "filters; loosen them or point it at other data")
    scores = np.asarray(trained.workflow.predict(trained.model, frame))
    y = frame[label]
    task = trained.workflow.task or evaluation.infer_task(y)
    metrics = evaluation.compute_metrics(task, y, scores, trained.model)
    if task == "binary" and (params.recall_at_fpr or params.precision_at_k):
        positive = evaluation.positive_class(trained.model, y)
        truth = (y == positive).to_numpy(dtype=int)
        p = scores.astype(float).reshape(-1)
        for fpr in params.recall_at_fpr:
            metrics[f"recall_at_fpr_{fpr:g}"] = recall_at_fpr(truth, p, fpr)
        for k in params.precision_at_k:
            metrics[f"precision_at_{k}"] = precision_at_k(truth, p, k)
    elif params.recall_at_fpr or params.precision_at_k:
        metrics["notes"].append(f"recall_at_fpr and precision_at_k are for binary models; "
                                f"this one is {task}")
    return metrics


def recall_at_fpr(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any], fpr: float) -> float | None:
    """The highest recall (true-positive rate) of any threshold whose false-positive rate is at
    most ``fpr``; None when the rows hold one class only."""
    from sklearn.metrics import roc_curve

    if len(np.unique(y)) < 2:
        return None
    # Every threshold: dropping "intermediate" points could drop the best one under the bound.
    fprs, tprs, _ = roc_curve(y, p, drop_intermediate=False)
    return float(tprs[fprs <= fpr].max())


def precision_at_k(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any], k: int) -> float | None:
    """The share of positives among the ``k`` highest scores (all rows if fewer; ties broken
    by row order); None without rows."""
    if len(y) == 0:
        return None
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean())
