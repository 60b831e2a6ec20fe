"""Ids in tables stay whole when the output is not a terminal, however narrow $COLUMNS is."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import pytest

from modelyard.client import Client
from tests.cli.test_cli import modelyard
from tests.conftest import ServerProcess, with_workflow

JOB_ID = re.compile(r"\b[0-9a-f]{32}\b")


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_job_ids_are_never_cut_when_piped(server: ServerProcess, client: Client,
                                          fraud_request: dict[str, Any]) -> None:
    request = copy.deepcopy(fraud_request)
    request["metadata"]["model_name"] = f"ids-{uuid.uuid4().hex[:8]}"
    failed = [client.train(with_workflow(request, "Raises", max_depth=i)) for i in (1, 2)]
    done = client.train(with_workflow(request, "Tiny"))
    for job_id in (*failed, done):
        client.wait(job_id, 120, raise_on_failure=False)

    listed = modelyard("jobs", "list", "--project", request["metadata"]["project"],
                       url=server.url, columns=40)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert set(JOB_ID.findall(listed.stdout)) == {*failed, done}
    assert "…" not in listed.stdout
    assert "boom: max_depth=1 is not allowed" in listed.stdout  # other columns are whole too

    versions = modelyard("models", "versions", request["metadata"]["model_name"],
                         url=server.url, columns=40)
    assert versions.returncode == 0, versions.stdout + versions.stderr
    assert JOB_ID.findall(versions.stdout) == [done]
