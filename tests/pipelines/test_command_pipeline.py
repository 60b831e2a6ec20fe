"""A pipeline of shell steps passing outputs downstream, and a run that overrides a step's
command and image, on a server whose command steps may run one folder's programs (the package's
``command_server``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.client import Client
from modelyard.errors import RequestError
from tests.conftest import ServerProcess
from tests.pipelines.conftest import install_programs

COUNT = """#!/bin/sh
# The first step: a number and a word for the next one.
echo "counting"
printf '{"rows": 42, "word": "parquet"}' > "$MODELYARD_OUTPUTS"
"""
SHOUT = """#!/bin/sh
# Reads the upstream step's outputs from inputs.json with sed alone: no Python here.
rows=$(sed -n 's/.*"rows": \\([0-9]*\\).*/\\1/p' "$MODELYARD_INPUTS")
word=$(sed -n 's/.*"word": "\\([^"]*\\)".*/\\1/p' "$MODELYARD_INPUTS")
loud=${1:-quiet}
printf '{"message": "%s rows of %s", "mode": "%s"}' "$rows" "$word" "$loud" > "$MODELYARD_OUTPUTS"
"""


@pytest.fixture(scope="module")
def step_server(command_server: ServerProcess) -> ServerProcess:
    install_programs(command_server, {"count.sh": COUNT, "shout.sh": SHOUT})
    return command_server


@pytest.fixture
def client(step_server: ServerProcess) -> Iterator[Client]:
    with step_server.client() as c:
        yield c


def _spec(name: str, second: list[str]) -> dict[str, Any]:
    return {"name": name, "steps": [
        {"name": "count", "type": "command", "command": ["count.sh"]},
        {"name": "shout", "type": "command", "command": second, "needs": ["count"]},
    ]}


def _steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run["steps"]}


def test_shell_steps_pass_outputs_downstream_and_a_branch_runs_its_own_command(
        client: Client) -> None:
    name = f"sh-{uuid.uuid4().hex[:8]}"
    client.create_pipeline(_spec(name, ["shout.sh"]))
    first = client.wait_pipeline_run(client.run_pipeline(name), timeout=60)
    assert first["state"] == "succeeded", first
    shout = _steps(first)["shout"]
    assert shout["outputs"]["message"] == "42 rows of parquet"
    assert shout["outputs"]["mode"] == "quiet" and shout["job_id"]
    assert "counting" in client.pipeline_logs(first["run_id"], "count")

    branch = client.wait_pipeline_run(client.run_pipeline(name, overrides={
        "shout": {"command": ["shout.sh", "loud"], "image": "registry.example/dev:branch"}}),
        timeout=60)
    steps = _steps(branch)
    assert steps["count"]["cache_hit"] and steps["count"]["reused_from"] == first["run_id"]
    assert not steps["shout"]["cache_hit"] and steps["shout"]["outputs"]["mode"] == "loud"
    assert branch["overrides"] == {"shout": {"command": ["shout.sh", "loud"],
                                             "image": "registry.example/dev:branch"}}
    with pytest.raises(RequestError, match="overrides.shout.image: .*does not start with an "
                                           "allowed prefix"):
        client.run_pipeline(name, overrides={"shout": {"image": "evil.example/x"}})
    with pytest.raises(RequestError, match="overrides.count.command: 'rm' is not an "
                                           "executable"):
        client.run_pipeline(name, overrides={"count": {"command": ["rm", "-rf", "/"]}})
