"""``modelyard models ...`` against the real server."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from modelyard.artifacts import ArtifactStore
from modelyard.client import Client
from tests.cli.test_cli import modelyard
from tests.conftest import ServerProcess, with_workflow


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_registry_from_the_command_line(server: ServerProcess, client: Client,
                                        fraud_request: dict[str, Any], tmp_path: Path) -> None:
    request = copy.deepcopy(fraud_request)
    name = f"cli-{uuid.uuid4().hex[:8]}"
    request["metadata"]["model_name"] = name
    for max_iter in (5, 30):
        client.wait(client.train(with_workflow(request, "sklearn", max_iter=max_iter)), 120)

    def run(*args: str) -> str:
        out = modelyard("models", *args, url=server.url)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert name in run("list")
    versions = run("versions", name)
    assert "candidate" in versions and "sha256:" in versions
    refused = modelyard("models", "stage", name, "1", "production", "--actor", "ana",
                        url=server.url)
    assert refused.returncode == 2 and "needs an approval" in refused.stdout
    assert "production, approved by ana" in run("approve", name, "1", "--user", "ana",
                                                "--comment", "ok")
    compared = run("compare", name, "2", "1")
    assert "v2 (candidate)" in compared and "v1 (production)" in compared
    assert "roc_auc" in compared
    # Each version's importances, measured once when it trained for its monitoring profile,
    # are on the version and in the comparison, most important first.
    assert "feature importance" in compared and "charge_amount" in compared
    store = ArtifactStore(str(server.home / "artifacts"))
    kept = {v["version"]: v for v in client.versions(name)}
    for v in kept.values():
        assert v["importance"] == store.read_job_json(v["job_id"], "profile.json")["importance"]
        assert v["importance_method"] == "model" and sum(v["importance"].values()) > 0.99
    both = client.compare(name, 1, 2)["importance"]
    assert [r["feature"] for r in both] == sorted(
        kept[1]["importance"], key=lambda f: -max(kept[1]["importance"][f],
                                                  kept[2]["importance"][f]))
    assert both[0]["delta"] == pytest.approx(both[0]["b"] - both[0]["a"])
    run("approve", name, "2", "--user", "bo", "--comment", "better")
    assert "v1 is production again" in run("rollback", name, "--actor", "cy", "--reason", "oops")
    trail = run("events", name)
    assert "archived -> production  by cy: rollback: oops" in trail
    policy = run("policy", name, "--auto-promote", "--min-improvement", "0.002", "--actor", "ops")
    assert '"auto_promote": true' in policy and '"min_improvement": 0.002' in policy
    exported = run("export", name, "1", str(tmp_path / "out"))
    assert "exported to" in exported and (tmp_path / "out").is_dir()

    # The same version in MLflow's format: an MLmodel folder, none of the plain export's files.
    pytest.importorskip("mlflow")
    as_mlflow = run("export", name, "1", str(tmp_path / "mlflow"), "--format", "mlflow")
    folder = tmp_path / "mlflow" / f"{name}-v1"
    assert f"exported to {folder} (mlflow.pyfunc.load_model('{folder}'))" in as_mlflow
    assert (folder / "MLmodel").is_file() and not (folder / "predict.py").exists()


def test_mlflow_export_without_mlflow_says_how_to_install_it(tmp_path: Path) -> None:
    # A real interpreter where mlflow cannot be imported, and no server: the check comes first.
    code = ("import sys; sys.modules['mlflow'] = None; from modelyard.cli.main import main; "
            "sys.argv = ['modelyard', *sys.argv[1:]]; main()")
    out = subprocess.run(
        [sys.executable, "-c", code, "models", "export", "any", "1", str(tmp_path / "out"),
         "--format", "mlflow"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200", "MODELYARD_URL": "http://127.0.0.1:9"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "exporting in MLflow format needs mlflow: pip install 'modelyard[mlflow]'" in out.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_policy_options_not_given_keep_their_values(server: ServerProcess) -> None:
    name = f"cli-policy-{uuid.uuid4().hex[:8]}"

    def policy(*args: str) -> dict[str, Any]:
        out = modelyard("models", "policy", name, *args, "--actor", "ops", url=server.url)
        assert out.returncode == 0, out.stderr
        answer: dict[str, Any] = json.loads(out.stdout)
        return answer

    first = policy("--lower-is-better", "--metric", "rmse", "--no-four-eyes")
    assert (first["higher_is_better"], first["metric"], first["four_eyes"]) == (
        False, "rmse", False)
    second = policy("--max-score-psi", "0.2", "--min-holdout-rows", "500",
                    "--fleet-promotion", "shadow")
    assert {k: second[k] for k in ("higher_is_better", "metric", "four_eyes", "max_score_psi",
                                   "min_holdout_rows", "fleet_promotion")} == {
        "higher_is_better": False, "metric": "rmse", "four_eyes": False, "max_score_psi": 0.2,
        "min_holdout_rows": 500, "fleet_promotion": "shadow"}
    cleared = policy("--no-max-score-psi")
    assert (cleared["max_score_psi"], cleared["min_holdout_rows"], cleared["metric"]) == (
        None, 500, "rmse")
