"""Registry test helpers: a model name of the test's own, and versions trained through the
real server."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from modelyard.client import Client
from tests.conftest import with_workflow


def train_version(client: Client, request: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Train ``request`` with the built-in sklearn workflow and return the version it made."""
    max_iter = params.pop("max_iter", 20)
    if max_iter is not None:
        params["max_iter"] = max_iter
    req = with_workflow(request, "sklearn", **params)
    job_id = client.train(req)
    client.wait(job_id, timeout=120)
    versions = client.versions(req["metadata"]["model_name"])  # type: ignore[index]
    return next(v for v in versions if v["job_id"] == job_id)


@pytest.fixture
def model_request(fraud_request: dict[str, Any]) -> dict[str, Any]:
    request = copy.deepcopy(fraud_request)
    request["metadata"]["model_name"] = f"fraud-{uuid.uuid4().hex[:8]}"
    return request
