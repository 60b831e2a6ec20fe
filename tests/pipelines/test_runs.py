"""Pipeline runs through the real server: DAG order, failure propagation, the cache, reruns,
cancel, and one run at a time."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.client import Client
from modelyard.errors import Conflict, RequestError
from tests.conftest import ServerProcess
from tests.pipelines.conftest import train_with


def _steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run["steps"]}


def test_a_failed_step_stops_its_dependants_and_independent_branches_finish(
        client: Client, name: str) -> None:
    client.create_pipeline({"name": name, "steps": [
        {"name": "good", "type": "train", "with": train_with(name)},
        {"name": "check", "type": "validate_model", "needs": ["good"]},
        {"name": "bad", "type": "train",
         "with": train_with(f"{name}-bad", "Raises", max_depth=7)},
        {"name": "ship", "type": "deploy", "needs": ["bad"], "with": {"to": "shadow"}},
    ]})
    run = client.wait_pipeline_run(client.run_pipeline(name), timeout=120)
    steps = _steps(run)
    assert run["state"] == "failed"
    assert run["error"].startswith("step 'bad' failed: ") and "max_depth=7" in run["error"]
    assert steps["good"]["state"] == "succeeded" and steps["check"]["state"] == "succeeded"
    assert steps["good"]["outputs"]["versions"] == {"*": 1}
    assert steps["check"]["outputs"]["passed"] == {"*": 1}
    assert steps["ship"]["state"] == "skipped"
    assert "step 'bad', which it needs, failed" in steps["ship"]["error"]
    # DAG order: a step starts only after the steps it needs ended.
    assert steps["check"]["started_at"] >= steps["good"]["finished_at"]
    listed = client.pipelines()
    assert name in listed["failing"]
    assert "max_depth=7" in client.pipeline_logs(run["run_id"], "bad")


def test_second_identical_run_hits_the_cache_and_rerun_from_runs_the_rest(
        client: Client, name: str) -> None:
    client.create_pipeline({"name": name, "steps": [
        {"name": "train", "type": "train", "with": train_with(name)},
        {"name": "check", "type": "validate_model", "needs": ["train"]},
        {"name": "ship", "type": "deploy", "needs": ["check"], "with": {"to": "approval"}},
    ]})
    first = client.wait_pipeline_run(client.run_pipeline(name), timeout=120)
    assert first["state"] == "succeeded", first
    assert "waiting for a person's approval: version 1" in first["waiting_for_approval"][0]
    second = client.wait_pipeline_run(client.run_pipeline(name), timeout=60)
    train = _steps(second)["train"]
    assert train["cache_hit"] and train["reused_from"] == first["run_id"]
    assert train["job_id"] is None and train["outputs"] == _steps(first)["train"]["outputs"]
    assert second["state"] == "succeeded"

    again = client.wait_pipeline_run(client.rerun_pipeline(first["run_id"], "check"), 60)
    steps = _steps(again)
    assert again["reason"]["rerun_of"] == first["run_id"]
    assert steps["train"]["reused_from"] == first["run_id"] and not steps["train"]["job_id"]
    assert "reused from run" in steps["train"]["summary"]
    assert steps["check"]["state"] == steps["ship"]["state"] == "succeeded"
    assert steps["check"]["started_at"] > first["finished_at"]
    with pytest.raises(RequestError, match="from_step: 'nope' is no step"):
        client.rerun_pipeline(first["run_id"], "nope")


def test_one_run_at_a_time_and_cancel_stops_its_jobs(server: ServerProcess, client: Client,
                                                     name: str) -> None:
    client.create_pipeline({"name": name, "steps": [
        {"name": "slow", "type": "train", "with": train_with(name, "Sleeps", seconds=60)},
        {"name": "after", "type": "validate_model", "needs": ["slow"]},
    ]})
    run_id = client.run_pipeline(name)
    with pytest.raises(Conflict, match=f"already has a run under way \\({run_id}\\)"):
        client.run_pipeline(name)
    job_id = _running_job(client, run_id)
    cancelled = client.cancel_pipeline_run(run_id)
    assert cancelled["state"] == "cancelled"
    assert {s["state"] for s in cancelled["steps"]} == {"cancelled"}
    assert client.status(job_id)["transition"]["job_state"] == "cancelled"
    with pytest.raises(Conflict, match="has already ended"):
        client.cancel_pipeline_run(run_id)
    client.cancel_pipeline_run(client.run_pipeline(name))  # the next run may start


def _running_job(client: Client, run_id: str) -> str:
    from tests.conftest import wait_until

    found: list[str] = []

    def started() -> bool:
        job_id = _steps(client.pipeline_run(run_id))["slow"]["job_id"]
        found[:] = [job_id] if job_id else []
        return bool(job_id)

    wait_until(started, timeout=30)
    return found[0]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_deploy_goes_to_production_only_where_the_policy_allows(client: Client,
                                                              name: str) -> None:
    client.set_policy(name, auto_promote=True, min_improvement=0.5, actor="ops")

    def spec(max_iter: int) -> dict[str, Any]:
        return {"name": name, "steps": [
            {"name": "fit", "type": "train", "with": train_with(name, max_iter=max_iter)},
            {"name": "check", "type": "validate_model", "needs": ["fit"]},
            {"name": "ship", "type": "deploy", "needs": ["check"], "with": {"to": "production"}},
        ]}

    client.create_pipeline(spec(100))
    first = client.wait_pipeline_run(client.run_pipeline(name), timeout=60)
    assert first["state"] == "succeeded", first
    assert _steps(first)["ship"]["outputs"]["versions"] == {"*": 1}
    assert client.version(name, 1)["stage"] == "production"

    client.create_pipeline(spec(150))  # another request: no cache hit
    second = client.wait_pipeline_run(client.run_pipeline(name), timeout=60)
    steps = _steps(second)
    assert second["state"] == "failed" and steps["ship"]["state"] == "skipped"
    assert "no candidate of" in steps["check"]["error"]
    assert "tenant * version 2: roc_auc" in steps["check"]["error"]
    assert "margin 0.5" in steps["check"]["error"]
    assert client.version(name, 2)["stage"] == "candidate"


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_deploying_to_shadow_never_demotes_a_version_already_in_production(
        client: Client, name: str) -> None:
    client.set_policy(name, auto_promote=True, actor="ops")  # promoted when it registers
    client.create_pipeline({"name": name, "steps": [
        {"name": "fit", "type": "train", "with": train_with(name)},
        {"name": "check", "type": "validate_model", "needs": ["fit"]},
        {"name": "ship", "type": "deploy", "needs": ["check"], "with": {"to": "shadow"}},
    ]})
    run = client.wait_pipeline_run(client.run_pipeline(name), timeout=60)
    assert run["state"] == "succeeded", run
    assert _steps(run)["ship"]["outputs"]["versions"] == {"*": 1}
    assert client.version(name, 1)["stage"] == "production"
