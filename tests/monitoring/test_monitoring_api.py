"""Monitoring through the real server: a trained version's profile, real predict calls in the
production log, labels posted later, ``GET /models/{name}/monitoring`` and ``modelyard monitor``.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from modelyard.client import Client
from modelyard.monitoring.stats import psi
from tests.cli.test_cli import modelyard
from tests.conftest import ServerProcess, start_server, with_workflow

# The production log, labels and profiles are files; the job store plays no part here.
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)
FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
LABEL = "has_fraud_dispute"


def _train(client: Client, request: dict[str, Any], path: str = "payments.parquet"
           ) -> dict[str, Any]:
    request = copy.deepcopy(request)
    name = f"mon-{uuid.uuid4().hex[:8]}"
    request["metadata"]["model_name"] = name
    request["data"]["features"]["path"] = path
    client.wait(client.train(with_workflow(request, "sklearn", max_iter=20)), 120)
    client.approve(name, 1, user="kelley", comment="monitor it")
    version = client.version(name, 1)
    return {"name": name, "job_id": version["job_id"], "version": version}


@pytest.fixture
def served(client: Client, fraud_request: dict[str, Any]) -> dict[str, Any]:
    """A model whose v1 is in production."""
    return _train(client, fraud_request)


def _frame(server: ServerProcess, n: int, seed: int) -> pd.DataFrame:
    """Rows like the training rows: the request's columns, its filter applied."""
    frame = pd.read_parquet(server.home / "data" / "payments.parquet",
                            columns=["created_at", *FEATURES, LABEL])
    frame = frame[frame["charge_country"].isin(["US", "CA", "GB", "FR", "DE", "BR", "MX"])]
    return frame.sample(n, random_state=seed).reset_index(drop=True)


def _predict(server: ServerProcess, name: str, frame: pd.DataFrame) -> dict[str, Any]:
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in frame[FEATURES].to_dict("records")]
    answer = httpx.post(f"{server.url}/predict/{name}", json={"rows": rows}, timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _stats(server: ServerProcess) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{server.url}/serving/stats", timeout=30).json()
    return stats


def _profile(server: ServerProcess, job_id: str) -> dict[str, Any]:
    path = server.home / "artifacts" / "jobs" / job_id / "profile.json"
    profile: dict[str, Any] = json.loads(path.read_text())
    return profile


@SQLITE
def test_drift_from_the_production_log_matches_numpy_and_the_cli_shows_it(
        server: ServerProcess, client: Client, served: dict[str, Any]) -> None:
    name = served["name"]
    frame = pd.concat([_frame(server, 150, seed=1), _frame(server, 150, seed=2)])
    answers = [_predict(server, name, frame.iloc[:150]), _predict(server, name, frame.iloc[150:])]

    report = client.monitoring(name, window="1h")
    assert (report["version"], report["served_by_tenant"], report["rows"]) == (1, "*", 300)
    assert report["source"] == "production log" and report["schema_changes"] == []
    assert {f["name"] for f in report["features"]} == set(FEATURES)
    ranks = [f["rank_score"] for f in report["features"]]
    assert ranks == sorted(ranks, reverse=True)

    # The figures, recomputed from the stored profile and the rows sent, with numpy.
    profile = _profile(server, served["job_id"])
    amount = next(f for f in profile["features"] if f["name"] == "charge_amount")["number"]
    bins = np.r_[-np.inf, amount["edges"], np.inf]  # amounts are continuous: no value on an edge
    shares = np.histogram(frame["charge_amount"], bins)[0] / len(frame)
    got = next(f for f in report["features"] if f["name"] == "charge_amount")
    assert got["psi"] == pytest.approx(psi(amount["proportions"], shares), rel=1e-9)
    assert got["rank_score"] == pytest.approx(got["psi"] * got["importance"])
    scores = np.concatenate([a["scores"] for a in answers])
    score = profile["score"]
    # Scores tie (trees score in steps), some on an edge: bins are (lower, upper].
    codes = pd.cut(scores, np.r_[-np.inf, score["edges"], np.inf], right=True, labels=False)
    score_shares = np.bincount(codes, minlength=len(score["edges"]) + 1) / len(scores)
    prediction = report["prediction"]
    assert prediction["rows"] == 300
    assert prediction["psi"] == pytest.approx(psi(score["proportions"], score_shares), rel=1e-9)
    assert prediction["mean_current"] == pytest.approx(scores.mean())
    staleness = report["staleness"]
    assert 0 <= staleness["model_age_days"] < 1
    assert staleness["newest_training_row"].startswith("2018-")  # the request's date column
    assert _stats(server)["production_logged"] >= 300

    shown = modelyard("monitor", name, "--window", "1h", url=server.url)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    for text in ("top drifting features", "charge_amount", "prediction drift", "decay: roc_auc",
                 "staleness: trained"):
        assert text in shown.stdout
    as_json = modelyard("monitor", name, "--window", "1h", "--json", url=server.url)
    assert json.loads(as_json.stdout)["rows"] == 300

    # Day by day: today's window holds every row; each point is that day's monitoring report.
    history = httpx.get(f"{server.url}/models/{name}/monitoring/history",
                        params={"days": 3}, timeout=60).json()
    assert history["rows"] == [0, 0, 300] and history["version"] == 1
    assert history["prediction_psi"][:2] == [None, None]
    assert history["prediction_psi"][2] == pytest.approx(prediction["psi"])
    top = history["features"][0]
    assert top["name"] == report["features"][0]["name"]
    assert top["psi"][2] == pytest.approx(report["features"][0]["psi"])


@SQLITE
def test_drifted_traffic_ranks_the_drifted_important_feature_first_and_names_schema_changes(
        server: ServerProcess, client: Client, served: dict[str, Any]) -> None:
    name = served["name"]
    importance = client.monitoring(name, traffic=_write(server, _frame(server, 2000, seed=3),
                                                         "calm"))
    assert importance["rows"] == 2000
    assert all(f["band"] != "major" for f in importance["features"])
    top = max((f for f in importance["features"] if f["kind"] == "number"),
              key=lambda f: f["importance"])["name"]

    drifted = _frame(server, 2000, seed=4)
    drifted[top] = drifted[top] * 10 + 1000
    report = client.monitoring(name, traffic=_write(server, drifted, "drifted"))
    assert report["features"][0]["name"] == top
    assert report["features"][0]["band"] == "major"
    assert report["prediction"] is None  # traffic carries no scores of this version

    changed = _frame(server, 500, seed=5).drop(columns=["hour_of_day"])
    changed["card_age_days"] = changed["card_age_days"].astype(str)
    changed["referrer"] = "partner"
    report = client.monitoring(name, traffic=_write(server, changed, "changed"))
    assert {(c["column"], c["change"], c["reference_type"], c["current_type"])
            for c in report["schema_changes"]} == {
        ("hour_of_day", "missing", "number", None),
        ("card_age_days", "retyped", "number", "category"),
        ("referrer", "new", None, "category")}


def _write(server: ServerProcess, frame: pd.DataFrame, what: str) -> str:
    name = f"traffic-{what}-{uuid.uuid4().hex[:6]}.parquet"
    frame.to_parquet(server.home / "data" / name)
    return name


@SQLITE
def test_decay_joins_labels_to_the_production_log(
        server: ServerProcess, client: Client, served: dict[str, Any]) -> None:
    name = served["name"]
    frame = _frame(server, 400, seed=6)
    answer = _predict(server, name, frame)
    labels = [{"request_id": answer["request_id"], "row": i, "label": float(y)}
              for i, y in enumerate(frame[LABEL])]
    added = client.add_labels(name, labels=labels)
    assert added["matched"] == 400  # no shadow: the production log holds the predictions

    decay = client.monitoring(name, window="1h")["decay"]
    assert decay["metric"] == "roc_auc" and decay["higher_is_better"] is True
    assert decay["holdout_value"] == served["version"]["metrics"]["roc_auc"]
    latest = decay["windows"][-1]
    assert latest["labelled_rows"] == 400
    assert latest["value"] == pytest.approx(roc_auc_score(frame[LABEL], answer["scores"]))
    assert sum(w["labelled_rows"] for w in decay["windows"]) == 400


@SQLITE
def test_refusals_name_the_model_and_the_window(server: ServerProcess, client: Client,
                                                served: dict[str, Any]) -> None:
    missing = httpx.get(f"{server.url}/models/never-trained/monitoring", timeout=30)
    assert missing.status_code == 404
    assert "no production version" in missing.json()["message"]
    bad = httpx.get(f"{server.url}/models/{served['name']}/monitoring",
                    params={"window": "7x"}, timeout=30)
    assert bad.status_code == 422 and "window" in bad.json()["message"]
    empty = client.monitoring(served["name"], tenant="nobody-here", window="1m")
    assert (empty["rows"], empty["features"], empty["prediction"]) == (0, [], None)
    assert empty["served_by_tenant"] == "*"
    outside = httpx.get(f"{server.url}/models/{served['name']}/monitoring",
                        params={"traffic": "/etc/passwd"}, timeout=30)
    assert outside.status_code == 403
    months = httpx.get(f"{server.url}/models/{served['name']}/monitoring/history",
                       params={"days": 400}, timeout=30)
    assert months.status_code == 422 and "days" in months.json()["message"]


def test_a_full_log_buffer_drops_and_counts_rows(tmp_path: Path,
                                                 fraud_request: dict[str, Any]) -> None:
    small = start_server(tmp_path, "sqlite", "--log-buffer-rows", "5")
    try:
        with small.client() as client:
            name = _train(client, fraud_request, "tiny.parquet")["name"]
            _predict(small, name, _frame(small, 8, seed=7))  # over the bound: dropped whole
            _predict(small, name, _frame(small, 4, seed=8))
            assert client.monitoring(name, window="1h")["rows"] == 4
            stats = _stats(small)
            assert (stats["production_dropped"], stats["production_logged"]) == (8, 4)
    finally:
        small.stop()
