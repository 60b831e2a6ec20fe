"""The workflow contract's conformance checks, for users' CI and ours.

::

    from modelyard.testing import check_workflow
    check_workflow(MyWorkflow)                       # on synthetic payments data
    check_workflow(MyWorkflow, request=req, data=df) # on your own columns

A workflow passes when it: keeps ``__init__`` free of logic, returns a fitted model from
``train``, leaves the input frames untouched, gives one finite prediction per row, gives the same
predictions when trained twice on the same data (seeded), and predicts the same after a pickle
round trip (what Modelyard stores is what it serves).
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import WorkflowCheckFailed
from modelyard.request.loading import parse_request
from modelyard.runtime.workflow import Workflow
from modelyard.synthetic import example_request, payments_table

# WorkflowCheckFailed lives in the exception tree; users import it from here too.
__all__ = ["WorkflowCheckFailed", "check_workflow"]


def check_workflow(
    workflow_cls: type[Workflow],
    *,
    request: Mapping[str, Any] | None = None,
    data: pd.DataFrame | None = None,
    holdout_fraction: float = 0.25,
    seed: int = 0,
) -> None:
    """Run every contract check on ``workflow_cls``; raise :class:`WorkflowCheckFailed` on the first
    broken rule.

    Args:
        workflow_cls: the class to check.
        request: a train request (mapping) whose ``train`` block fits ``data``; default: the demo's
            fraud request with this workflow.
        data: rows to train and predict on; default: 4,000 synthetic payments.
        holdout_fraction: share of ``data`` held out for prediction checks.
        seed: seed of the train/holdout split.
    """
    name = workflow_cls.__name__
    if not (isinstance(workflow_cls, type) and issubclass(workflow_cls, Workflow)):
        raise WorkflowCheckFailed(f"{workflow_cls!r} is not a subclass of modelyard.Workflow")
    if "__init__" in vars(workflow_cls):
        raise WorkflowCheckFailed(
            f"{name} defines __init__; a workflow holds configuration only: read "
            "self.custom_params in train() instead"
        )
    if request is None:
        request = example_request(
            "payments.parquet",
            workflow_name=f"{workflow_cls.__module__}:{workflow_cls.__qualname__}",
            custom_params={},
        )
    parsed = parse_request(request)
    if data is None:
        data = payments_table(rows=4_000, merchants=50, seed=seed).to_pandas()
    mask = np.random.default_rng(seed).random(len(data)) < holdout_fraction
    train_df = data[~mask].reset_index(drop=True)
    holdout_df = data[mask].reset_index(drop=True)

    before = (train_df.copy(), holdout_df.copy())
    first = workflow_cls(parsed)
    model = first.train(train_df, holdout_df)
    if model is None:
        raise WorkflowCheckFailed(f"{name}.train returned None; return the fitted model")
    if not (train_df.equals(before[0]) and holdout_df.equals(before[1])):
        raise WorkflowCheckFailed(
            f"{name}.train modified its input frames; copy them before changing columns"
        )
    scores = np.asarray(first.predict(model, holdout_df))
    if len(scores) != len(holdout_df):
        raise WorkflowCheckFailed(
            f"{name}.predict returned {len(scores)} predictions for {len(holdout_df)} rows; "
            "it must return one per row"
        )
    if np.issubdtype(scores.dtype, np.number) and not np.all(np.isfinite(scores)):
        raise WorkflowCheckFailed(f"{name}.predict returned NaN or infinite values")

    second = workflow_cls(parse_request(copy.deepcopy(dict(request))))
    again = np.asarray(second.predict(second.train(train_df, holdout_df), holdout_df))
    if not _same(scores, again):
        raise WorkflowCheckFailed(
            f"{name} is not deterministic: training twice on the same data gave different "
            "predictions; seed every random source (random_state=...)"
        )
    try:
        restored = pickle.loads(pickle.dumps(model, protocol=5))
    except Exception as exc:
        raise WorkflowCheckFailed(
            f"{name}'s model does not survive pickling ({type(exc).__name__}: {exc})"
        ) from exc
    if not _same(scores, np.asarray(first.predict(restored, holdout_df))):
        raise WorkflowCheckFailed(f"{name}'s model predicts differently after a pickle round trip")


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    if a.shape != b.shape:
        return False
    if np.issubdtype(a.dtype, np.number):
        return bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))
    return bool(np.array_equal(a, b))
