"""How ``train --wait`` and ``jobs show`` end: why a job or a fleet failed, and the exit code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.client import Client
from tests.cli.test_cli import modelyard
from tests.conftest import ServerProcess, with_workflow


def fleet_request(fraud_request: dict[str, Any], **tenants: Any) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(json.dumps(fraud_request))
    request["data"]["features"]["names"].append("merchant_id")
    request["tenants"] = {"column": "merchant_id", "min_training_rows": 400, **tenants}
    return request


def train_and_wait(server: ServerProcess, path: Path, request: dict[str, Any]) -> tuple[str, str]:
    """``modelyard train --wait`` of a job that fails: its id and what the command printed."""
    path.write_text(yaml.safe_dump(request))
    run = modelyard("train", str(path), "--wait", url=server.url, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    return run.stdout.split("submitted job")[1].split()[0], run.stdout


def show(server: ServerProcess, job_id: str) -> str:
    """``modelyard jobs show`` of a failed job: it exits 1, as ``train --wait`` does."""
    shown = modelyard("jobs", "show", job_id, url=server.url)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    as_json = modelyard("jobs", "show", job_id, "--json", url=server.url)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["exception_info"]
    return shown.stdout


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_failed_job_shows_type_step_and_message_and_exits_1(
    server: ServerProcess, tmp_path: Path, fraud_request: dict[str, Any]
) -> None:
    job_id, waited = train_and_wait(server, tmp_path / "bad.yaml",
                                    with_workflow(fraud_request, "Raises", max_depth=7))
    for out in (waited, show(server, job_id)):
        assert (f"job {job_id} failed: ValueError in step train: boom: max_depth=7 is not "
                "allowed") in out
        assert f"log    {server.home}" in out


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_failed_fleet_shows_its_reason_and_first_failed_children(
    server: ServerProcess, client: Client, tmp_path: Path, fraud_request: dict[str, Any]
) -> None:
    request = fleet_request(with_workflow(fraud_request, "Raises", max_depth=3))
    job_id, waited = train_and_wait(server, tmp_path / "fleet.yaml", request)
    fleet = client.fleet(job_id)
    failed = fleet["counts"]["failed"]
    assert failed > 5, fleet["counts"]  # more than are shown
    children = client.jobs(parent_id=job_id, state="failed", limit=100)["jobs"]
    global_id = next(c["job_id"] for c in children if c["kind"] == "global")
    for out in (waited, show(server, job_id)):
        assert re.search(rf"^fleet {job_id}: failed", out, re.M)
        assert f"job {job_id} failed: fleet done: 0 models, {failed} failed" in out
        assert "FleetFailed" in out
        assert f"failed children (5 of {failed})" in out
        # The global model first, whole id, with its own error's type, step and message.
        assert re.search(rf"{global_id} .* global .* ValueError in step train: boom: "
                         "max_depth=3 is not allowed", out)
        assert out.count("ValueError in step train: boom: max_depth=3") == 5
        assert (f"and {failed - 5} more failed children: modelyard jobs list --parent-id "
                f"{job_id} --state failed") in out
    listed = modelyard("jobs", "list", "--parent-id", job_id, "--state", "failed", "--json",
                       url=server.url)
    assert len(json.loads(listed.stdout)["jobs"]) == failed


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_fleet_whose_plan_failed_says_why_instead_of_an_empty_table(
    server: ServerProcess, tmp_path: Path, fraud_request: dict[str, Any]
) -> None:
    request = fleet_request(fraud_request, column="no_such_column")
    job_id, waited = train_and_wait(server, tmp_path / "fleet.yaml", request)
    for out in (waited, show(server, job_id)):
        assert "no tenants: the fleet has no plan" in out
        assert "tenants (first" not in out and "served by" not in out
        assert re.search(rf"job {job_id} failed: DataError in step load: .*no column "
                         "'no_such_column' in payments.parquet", out)
