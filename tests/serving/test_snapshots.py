"""A version scores with the code it was trained with: serving, the shadow scorer and exports
load its workflow snapshot, not the workflow file as it is now; a new run trains (and scores)
with the new code.

One server, started with a workflow file that the test edits after training: the edit flips
``predict`` and changes a constant that a transformer class of the same file (inside the
pickle) reads at predict time. The server is restarted after the edit, so every model is
loaded afresh from the registry and the artefact store.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import ServerProcess, start_server, with_workflow

FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
FLOWS = '''"""Workflows that tests/serving/test_snapshots.py edits after training."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from modelyard import Workflow

FLIP = {flip}
SCALE = {scale}


class Numeric(BaseEstimator, TransformerMixin):
    """The numeric features; times SCALE when scoring (fitting is unscaled)."""

    def fit(self, x, y=None):
        return self

    def fit_transform(self, x, y=None):
        return x.select_dtypes("number").to_numpy(float)

    def transform(self, x):
        return x.select_dtypes("number").to_numpy(float) * SCALE


class Flips(Workflow):
    def train(self, train_df, holdout_df):
        model = make_pipeline(Numeric(), LogisticRegression(C=self.custom_params["C"]))
        return model.fit(train_df[self.features], train_df[self.label])

    def predict(self, model, df):
        scores = super().predict(model, df)
        return 1.0 - scores if FLIP else scores
'''
OLD = FLOWS.format(flip=False, scale=1.0)
NEW = FLOWS.format(flip=True, scale=0.0)


def _predict(server: ServerProcess, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/predict/{name}", json={"rows": rows}, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _shadow_scores(server: ServerProcess, name: str, request_id: str) -> np.ndarray[Any, Any]:
    """The shadow scores logged for one request, once the scorer has written everything."""
    httpx.get(f"{server.url}/models/{name}/shadow-report", timeout=90).raise_for_status()
    folder = server.home / "shadow" / f"model={urllib.parse.quote(name, safe='')}"
    frame = pd.concat(pq.read_table(p).to_pandas() for p in folder.rglob("part-*.parquet"))
    mine = frame[frame["request_id"] == request_id].sort_values("row")
    return mine["shadow_score"].to_numpy()


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory,
           fraud_request_module: dict[str, Any]) -> Any:
    """v1 (production) and v2 (shadow) trained with the old code, each scored once; then the
    file edited and the server restarted."""
    tmp = tmp_path_factory.mktemp("snapshots")
    flows = tmp / "snapflows.py"
    flows.write_text(OLD)
    server = start_server(tmp, "sqlite", "--workflows", str(flows))
    name = f"snap-{uuid.uuid4().hex[:8]}"
    request = {**fraud_request_module,
               "metadata": {**fraud_request_module["metadata"], "model_name": name}}
    frame = pd.read_parquet(server.home / "data" / "payments.parquet").sample(40, random_state=5)
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in frame[FEATURES].to_dict("records")]
    with server.client() as client:
        jobs = [client.wait(client.train(with_workflow(request, "Flips", C=c)), 120)
                for c in (1.0, 0.5)]
        client.approve(name, 1, user="kelley", comment="first")
        client.set_stage(name, 2, "shadow", actor="kelley", reason="compare")
    before = _predict(server, name, rows)
    shadow_before = _shadow_scores(server, name, before["request_id"])
    server.stop()
    flows.write_text(NEW)
    server.start()
    yield {"server": server, "name": name, "rows": rows, "request": request, "jobs": jobs,
           "before": before, "shadow_before": shadow_before, "tmp": tmp}
    server.stop()


@pytest.fixture(scope="module")
def fraud_request_module() -> dict[str, Any]:
    from modelyard.synthetic import example_request

    return example_request("payments.parquet")


def test_provenance_shows_the_snapshot_of_the_workflow_source(edited: dict[str, Any]) -> None:
    provenance = json.loads(Path(edited["jobs"][0]["result"]["provenance_path"]).read_text())
    snapshot = provenance["workflow"]["snapshot"]
    digest = "sha256:" + hashlib.sha256(OLD.encode()).hexdigest()
    assert snapshot == {"kind": "source", "module": "snapflows", "qualname": "Flips",
                        "object_id": digest}
    hexd = digest.split(":")[1]
    stored = edited["server"].home / "artifacts" / "objects" / "sha256" / hexd[:2] / hexd[2:]
    assert stored.read_text() == OLD


def test_serving_and_the_shadow_scorer_score_with_the_code_a_version_trained_with(
        edited: dict[str, Any]) -> None:
    server, name, rows = edited["server"], edited["name"], edited["rows"]
    after = _predict(server, name, rows)
    assert after["version"] == 1
    before = np.array(edited["before"]["scores"])
    assert np.ptp(before) > 1e-3  # the old transformer scaled by 1.0, not 0.0
    np.testing.assert_allclose(after["scores"], before, rtol=1e-12)
    shadow_after = _shadow_scores(server, name, after["request_id"])
    assert len(shadow_after) == len(rows)
    np.testing.assert_allclose(shadow_after, edited["shadow_before"], rtol=1e-12)


def test_a_folder_export_scores_with_the_snapshot(edited: dict[str, Any]) -> None:
    server, tmp = edited["server"], edited["tmp"]
    with server.client() as client:
        folder = client.export(edited["name"], 1, tmp / "export")
    assert (folder / "workflow_snapshot.py").read_text() == OLD
    pd.DataFrame(edited["rows"]).to_parquet(tmp / "rows.parquet")
    run = subprocess.run([sys.executable, str(folder / "predict.py"), str(tmp / "rows.parquet")],
                         capture_output=True, text=True, cwd=tmp, timeout=120)
    assert run.returncode == 0, run.stderr
    exported = [float(x) for x in run.stdout.split()]
    np.testing.assert_allclose(exported, edited["before"]["scores"], rtol=1e-9)


def test_a_new_run_trains_and_scores_with_the_new_code(edited: dict[str, Any]) -> None:
    server, name = edited["server"], edited["name"]
    with server.client() as client:
        job = client.wait(client.train(with_workflow(edited["request"], "Flips", C=1.0)), 120)
        # Fitting is unscaled in both versions of the file: the same bytes as v1, which the
        # model cache must not confuse with v1 (scored by the old code).
        assert job["result"]["model_id"] == edited["jobs"][0]["result"]["model_id"]
        client.approve(name, 3, user="kelley", comment="new code")
    answer = _predict(server, name, edited["rows"])
    assert answer["version"] == 3
    scores = np.array(answer["scores"])
    # The new code: the transformer zeroes every feature, and predict flips the score.
    assert np.ptp(scores) < 1e-12
    assert not np.allclose(scores, edited["before"]["scores"])
    provenance = json.loads(Path(job["result"]["provenance_path"]).read_text())
    assert provenance["workflow"]["snapshot"]["object_id"] == (
        "sha256:" + hashlib.sha256(NEW.encode()).hexdigest())


def test_a_replay_trains_with_the_code_of_the_job_it_replays(edited: dict[str, Any]) -> None:
    """The file now zeroes every feature when scoring: a replay that ran it would score a
    constant (AUC 0.5) and record the new file's hash; it runs the original's snapshot."""
    original = edited["jobs"][0]
    with edited["server"].client() as client:
        replay = client.replay(original["status"]["job_id"])
        done = client.wait(replay, 120)
        comparison = client.replay_comparison(replay)
    assert comparison["verdict"] == "reproduced" and comparison["reasons"] == [], comparison
    assert comparison["replay_workflow_sha256"] == comparison["original_workflow_sha256"] == (
        "sha256:" + hashlib.sha256(OLD.encode()).hexdigest())
    assert done["result"]["metrics"]["roc_auc"] == original["result"]["metrics"]["roc_auc"]
    provenance = json.loads(Path(done["result"]["provenance_path"]).read_text())
    assert provenance["workflow"]["snapshot"]["object_id"] == comparison[
        "original_workflow_sha256"]
    # A new run of the same request uses the file as it is now.
    with edited["server"].client() as client:
        fresh = client.wait(client.train(with_workflow(edited["request"], "Flips", C=1.0)), 120)
    assert fresh["result"]["metrics"]["roc_auc"] == 0.5
    assert original["result"]["metrics"]["roc_auc"] != 0.5
