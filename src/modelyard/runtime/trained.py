"""A trained version, loaded as it was trained: its verified bytes, and the workflow that trained
it, built from the job's stored request. Serving, the shadow scorer and a worker that scores
the production version beside its own candidate (champion/challenger) all load versions here.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from modelyard.artifacts import ArtifactStore
from modelyard.request.loading import parse_request
from modelyard.runtime.workflow import Workflow, resolve_workflow


@dataclass
class TrainedVersion:
    model: Any
    workflow: Workflow
    nbytes: int  # of its pickle
    # The Arrow type name of each column of the data it was trained on, from its provenance.
    column_types: dict[str, str]


def load_trained(store: ArtifactStore, model_id: str, job_id: str | None,
                 workflow_modules: tuple[str, ...] = (),
                 workflow_packages: tuple[str, ...] = ()) -> TrainedVersion:
    """Read, verify and unpickle a model, and build its workflow from its job's stored request.

    Raises:
        ArtifactError: the bytes do not match the model id.
        LookupError: the version has no job, so no training request.
        NotFound: the model or its job's provenance is missing from the artefact store.
        WorkflowError: its workflow can no longer be loaded from what the operator allows.
    """
    blob = store.get_bytes(model_id)  # verifies sha256
    model = pickle.loads(blob)  # noqa: S301 - bytes verified against the registered content address
    if not job_id:
        raise LookupError(f"model {model_id} has no training request (no job)")
    provenance = store.read_job_json(job_id, "provenance.json")
    request = parse_request(provenance["request"])
    cls = resolve_workflow(request.train.workflow_name, workflow_modules, workflow_packages)
    return TrainedVersion(model=model, workflow=cls(request), nbytes=len(blob),
                          column_types=dict(provenance.get("data", {}).get("schema", {})))
