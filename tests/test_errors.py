"""The exception tree: every error class is reachable by the client, and a 503 comes back typed."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

import modelyard.errors as errors
from modelyard.client import Client
from tests.conftest import ServerProcess, with_workflow


def _tree(root: type[errors.ModelyardError]) -> set[type[errors.ModelyardError]]:
    found = {root}
    for sub in root.__subclasses__():
        found |= _tree(sub)
    return found


def test_every_error_class_maps_back_from_its_name() -> None:
    ours = {c for c in _tree(errors.ModelyardError) if c.__module__ == "modelyard.errors"}
    # JobFailed is raised by the client itself, never answered by the server.
    answered = ours - {errors.JobFailed}
    assert {c for c in answered if errors.error_class(c.__name__) is not c} == set()
    assert errors.error_class("SomethingNew") is errors.ModelyardError


def test_classes_users_import_from_their_old_homes_are_the_tree_s() -> None:
    from modelyard.testing import WorkflowCheckFailed

    assert WorkflowCheckFailed is errors.WorkflowCheckFailed
    assert issubclass(errors.WorkflowCheckFailed, AssertionError)
    assert errors.ModelUnavailable.status_code == 503


# The 503 is serving's, mapped back by the client: SQLite alone.
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_an_unloadable_production_model_is_model_unavailable_at_the_client(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    request = copy.deepcopy(fraud_request)
    name = f"broken-{uuid.uuid4().hex[:8]}"
    request["metadata"]["model_name"] = name
    # A learning rate of its own gives the model bytes (so a content address) of its own.
    rate = 0.1 + int(uuid.uuid4().hex[:6], 16) * 1e-12
    job = client.wait(client.train(with_workflow(request, "sklearn", max_iter=5,
                                                 learning_rate=rate)), 120)
    client.approve(name, 1, user="kelley", comment="to production")
    model_id = job["result"]["model_id"]
    blob = server.home / "artifacts" / "objects" / "sha256" / model_id[7:9] / model_id[9:]
    blob.write_bytes(b"not the model any more")
    row = {"charge_type": "card", "charge_amount": 10.0, "charge_country": "US",
           "card_age_days": 3, "hour_of_day": 12}
    with pytest.raises(errors.ModelUnavailable, match=f"{name}"):
        client.predict(name, [row])
