"""Replays through the real server: the same request on the same data trains the same model
with every built-in workflow; a changed data file, an unseeded workflow and what cannot be
replayed are each reported as such; the command prints the verdict."""

from __future__ import annotations

import copy
import importlib.util
import shutil
import uuid
from typing import Any

import httpx
import pytest

from modelyard.client import Client
from modelyard.errors import Conflict
from modelyard.synthetic import write_payments
from tests.cli.test_cli import modelyard
from tests.conftest import ServerProcess, with_workflow

BUILTIN = [
    ("sklearn", {"max_iter": 20}),
    ("sklearn", {"estimator": "sklearn.linear_model.LogisticRegression", "max_iter": 200}),
    ("sklearn", {"estimator": "sklearn.ensemble.RandomForestClassifier", "n_estimators": 5,
                 "max_depth": 4}),
    ("lightgbm", {"n_estimators": 20}),
    ("xgboost", {"n_estimators": 20}),
    ("torch", {"epochs": 2, "hidden": [16]}),
]


def _named(request: dict[str, Any], prefix: str) -> dict[str, Any]:
    request = copy.deepcopy(request)
    request["metadata"]["model_name"] = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return request


def _replayed(client: Client, job_id: str) -> dict[str, Any]:
    replay_id = client.replay(job_id)
    client.wait(replay_id, 300, raise_on_failure=False)
    return client.replay_comparison(replay_id)


# Determinism, and the data fingerprints a verdict compares, are the workflows' and the
# worker's: the job store plays no part (SQLite alone). What may be replayed is read from the
# store, and is checked on every backend.
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("workflow", "params"), BUILTIN,
                         ids=["hist-gradient-boosting", "logistic-regression", "random-forest",
                              "lightgbm", "xgboost", "torch"])
def test_the_same_request_on_the_same_data_trains_the_same_model(
        client: Client, fraud_request: dict[str, Any], workflow: str,
        params: dict[str, Any]) -> None:
    if workflow in ("lightgbm", "xgboost", "torch") and importlib.util.find_spec(workflow) is None:
        pytest.skip(f"{workflow} is not installed")
    request = _named(with_workflow(fraud_request, workflow, **params), "replay")
    original = client.wait(client.train(request), 300)["result"]["model_id"]

    compared = _replayed(client, client.jobs(model_name=request["metadata"]["model_name"]
                                             )["jobs"][0]["job_id"])
    assert compared["verdict"] == "reproduced", compared
    assert compared["same_model"] is True and compared["replay_model_id"] == original
    assert compared["reasons"] == [] and compared["packages"] == []
    assert compared["data_files"] == []
    assert compared["explanation"] == "the replay trained the same model: its sha256 matches"
    # A replay checks a model; it does not register one.
    assert [v["version"] for v in client.versions(request["metadata"]["model_name"])] == [1]
    replay = client.job(compared["replay_job_id"])
    assert replay["status"]["replay_of"] == compared["original_job_id"]
    assert replay["request"] == client.job(compared["original_job_id"])["request"]
    assert client.job(compared["original_job_id"])["status"]["replay_of"] is None


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_replay_after_the_data_file_changed_says_the_data_changed(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    data = f"replay-{uuid.uuid4().hex[:8]}.parquet"
    shutil.copy(server.home / "data" / "payments.parquet", server.home / "data" / data)
    request = _named(with_workflow(fraud_request, "sklearn", max_iter=20), "replay-data")
    request["data"]["features"]["path"] = data
    job_id = client.train(request)
    client.wait(job_id, 300)
    write_payments(server.home / "data" / data, rows=20_000, merchants=200, seed=7)

    compared = _replayed(client, job_id)
    assert compared["verdict"] == "differs" and compared["same_model"] is False
    assert compared["reasons"] == ["data_changed"]
    assert compared["original_data_digest"] != compared["replay_data_digest"]
    (changed,) = compared["data_files"]
    assert changed["name"] == f"<data root>/{data}"
    assert changed["original"] != changed["replay"]
    assert compared["explanation"] == ("the model's sha256 differs: the data changed (its "
                                       "fingerprint differs)")


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_an_unseeded_workflow_is_reported_not_deterministic(
        client: Client, fraud_request: dict[str, Any]) -> None:
    request = _named(with_workflow(fraud_request, "Unseeded"), "replay-unseeded")
    job_id = client.train(request)
    client.wait(job_id, 300)

    compared = _replayed(client, job_id)
    assert compared["verdict"] == "differs" and compared["reasons"] == ["not_deterministic"]
    assert "the workflow is not deterministic" in compared["explanation"]


def test_what_cannot_be_replayed_is_refused(server: ServerProcess, client: Client,
                                            fraud_request: dict[str, Any]) -> None:
    failed = client.train(_named(with_workflow(fraud_request, "Raises", max_depth=7), "r"))
    client.wait(failed, 300, raise_on_failure=False)
    with pytest.raises(Conflict, match=f"job {failed} is failed; only a succeeded job has a "
                                       "model to compare a replay with"):
        client.replay(failed)
    with pytest.raises(Conflict, match=f"job {failed} is no replay; replay it with POST "
                                       f"/jobs/{failed}/replay"):
        client.replay_comparison(failed)

    fleet = _named(fraud_request, "replay-fleet")
    fleet["data"]["features"]["names"].append("merchant_id")
    fleet["tenants"] = {"column": "merchant_id", "min_training_rows": 400}
    parent = client.train(fleet)
    try:
        with pytest.raises(Conflict, match=f"job {parent} is a fleet's fleet job; replay "
                                           "reruns single train jobs"):
            client.replay(parent)
    finally:
        client.cancel(parent)
    missing = httpx.post(f"{server.url}/jobs/{'0' * 32}/replay")
    assert missing.status_code == 404 and "no job" in missing.json()["message"]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_the_replay_command_follows_the_replay_and_prints_the_verdict(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    job_id = client.train(_named(with_workflow(fraud_request, "sklearn", max_iter=10), "cli"))
    client.wait(job_id, 300)
    out = modelyard("jobs", "replay", job_id, url=server.url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"replaying job {job_id} as job" in out.stdout
    assert "reproduced: the replay trained the same model: its sha256 matches" in out.stdout
    assert "model sha256" in out.stdout and "same" in out.stdout

    unseeded = client.train(_named(with_workflow(fraud_request, "Unseeded"), "cli"))
    client.wait(unseeded, 300)
    differs = modelyard("jobs", "replay", unseeded, "--json", url=server.url)
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert '"reasons": [\n    "not_deterministic"\n  ]' in differs.stdout
