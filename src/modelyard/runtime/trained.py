"""A trained version, loaded as it was trained: its verified bytes, and the workflow that trained
it, from its code snapshot (:mod:`modelyard.runtime.snapshot`), configured with the job's stored
request. Serving, the shadow scorer and a worker that scores the production version beside its
own candidate (champion/challenger) all load versions here; exports carry the same snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.artifacts import ArtifactStore
from modelyard.request.loading import parse_request
from modelyard.runtime.exported import unpickle
from modelyard.runtime.snapshot import load_workflow
from modelyard.runtime.workflow import Workflow


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
    """Read, verify and unpickle a model, and build its workflow from its job's stored request
    with the code of its snapshot (the code resolved by name, for a version trained before
    snapshots or with an installed distribution's workflow).

    Raises:
        ArtifactError: the bytes do not match the model id.
        LookupError: the version has no job, so no training request.
        NotFound: the model or its job's provenance is missing from the artefact store.
        WorkflowError: its workflow can no longer be loaded from what the operator allows.
    """
    blob = store.get_bytes(model_id)  # verifies sha256
    if not job_id:
        raise LookupError(f"model {model_id} has no training request (no job)")
    provenance = store.read_job_json(job_id, "provenance.json")
    request = parse_request(provenance["request"])
    cls, snapshots = load_workflow(store, provenance.get("workflow", {}).get("snapshot"),
                                   request.train.workflow_name, workflow_modules,
                                   workflow_packages)
    # Bytes verified against the registered content address.
    model = unpickle(blob, snapshots)
    return TrainedVersion(model=model, workflow=cls(request), nbytes=len(blob),
                          column_types=dict(provenance.get("data", {}).get("schema", {})))
