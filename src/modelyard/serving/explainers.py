"""Which explainer a loaded version gets (:mod:`modelyard.serving.explain`), chosen the first
time it is asked and kept with the loaded model until it is evicted."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.artifacts import ArtifactStore
from modelyard.errors import NotFound
from modelyard.monitoring.profile import Profile
from modelyard.runtime.workflow import Workflow
from modelyard.serving.explain import Explainer, Explanation, explain, not_available
from modelyard.serving.explain_agnostic import KernelShap
from modelyard.serving.explain_trees import Inexact, tree_explainer
from modelyard.serving.loading import LoadedModel

log = logging.getLogger("modelyard.serving")


def explain_rows(loaded: LoadedModel, store: ArtifactStore, rows: Sequence[Mapping[str, Any]],
                 top: int) -> Explanation:
    """``rows`` explained by ``loaded``'s explainer, ``top`` contributions per row.

    Raises:
        RequestError: the version cannot be explained (multi-class, no ``shap`` for a model
            that needs it, no training profile), or too many rows for its method.
    """
    if loaded.explainer is None:
        loaded.explainer = explainer_for(loaded, store)
    try:
        return explain(loaded.explainer, loaded.ref.features, rows, top)
    except Inexact as exc:
        log.info("%s: %s; explained by Kernel SHAP from now on", loaded.schema.label, exc)
        loaded.explainer = kernel_shap_for(loaded, store)
        return explain(loaded.explainer, loaded.ref.features, rows, top)


def explainer_for(loaded: LoadedModel, store: ArtifactStore) -> Explainer:
    """The tree explainer of a built-in tree pipeline, else Kernel SHAP."""
    steps = getattr(loaded.model, "steps", None)
    estimator = steps[-1][1] if isinstance(steps, list) and steps else loaded.model
    classes = getattr(estimator, "classes_", None)
    if classes is not None and len(classes) > 2:
        raise not_available(loaded.schema.label, f"it is a classifier of {len(classes)} "
                            "classes")
    default_predict = type(loaded.workflow).predict is Workflow.predict
    try:
        tree = tree_explainer(loaded.model, default_predict, loaded.ref.features)
    except Exception as exc:  # no shap, or a tree model shap cannot read
        log.info("%s: no tree explainer (%s: %s)", loaded.schema.label, type(exc).__name__,
                 exc)
        tree = None
    return tree if tree is not None else kernel_shap_for(loaded, store)


def kernel_shap_for(loaded: LoadedModel, store: ArtifactStore) -> KernelShap:
    label = loaded.schema.label
    try:
        import shap  # noqa: F401
    except ImportError:
        raise not_available(label, "it needs the shap library, which this server lacks "
                            "(install modelyard[explain])") from None
    try:
        if not loaded.ref.job_id:
            raise NotFound("no job")
        profile = Profile.from_json(store.read_job_json(loaded.ref.job_id, "profile.json"))
    except NotFound:
        raise not_available(label, "it has no training profile to compare rows with (it was "
                            "trained before profiles were kept); retrain it") from None
    return KernelShap(loaded.workflow, loaded.model, loaded.schema, profile)
