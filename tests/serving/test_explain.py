"""``"explain": true`` on POST /predict through the real server: each method's contributions add
up to the model's own output on the row (SHAP additivity), on the request's own columns."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard.client import Client
from tests.conftest import ServerProcess, with_workflow

FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
NUMBERS = ["charge_amount", "card_age_days", "hour_of_day"]
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _production(client: Client, fraud_request: dict[str, Any], workflow: str,
                features: list[str], path: str = "tiny.parquet", **params: Any) -> str:
    request = copy.deepcopy(with_workflow(fraud_request, workflow, **params))
    name = f"explain-{uuid.uuid4().hex[:8]}"
    request["metadata"]["model_name"] = name
    request["data"]["features"]["path"] = path
    request["train"]["classifier_features"] = features
    client.wait(client.train(request), 120)
    client.approve(name, 1, user="kelley", comment="explain me")
    return name


def _rows(server: ServerProcess, features: list[str], n: int) -> list[dict[str, Any]]:
    frame = pd.read_parquet(server.home / "data" / "tiny.parquet").sample(n, random_state=3)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in frame[features].to_dict("records")]


def _explain(server: ServerProcess, name: str, rows: list[dict[str, Any]], top: int
             ) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/predict/{name}", timeout=120,
                        json={"rows": rows, "explain": True, "explain_top": top})
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    return out


def _check_additive(answer: dict[str, Any], margins: np.ndarray[Any, Any], features: list[str],
                    top: int) -> None:
    rows = answer["explanation"]["rows"]
    assert len(rows) == len(margins)
    for row, margin in zip(rows, margins, strict=True):
        listed = [c["contribution"] for c in row["contributions"]]
        assert [c["feature"] for c in row["contributions"]] != []
        assert {c["feature"] for c in row["contributions"]} <= set(features)
        assert len(listed) == min(top, len(features))
        assert listed == sorted(listed, key=abs, reverse=True)
        total = row["base_value"] + sum(listed) + row["others"]
        assert total == pytest.approx(row["margin"], abs=1e-9)
        assert row["margin"] == pytest.approx(margin, rel=1e-5, abs=1e-5)


def _log_odds(scores: list[float]) -> np.ndarray[Any, Any]:
    p = np.asarray(scores, dtype=np.float64)
    return np.log(p / (1 - p))


@SQLITE
def test_lightgbm_contributions_add_up_to_its_log_odds(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    name = _production(client, fraud_request, "lightgbm", FEATURES, n_estimators=20)
    rows = _rows(server, FEATURES, 6)
    answer = _explain(server, name, rows, top=2)
    assert answer["explanation"]["method"] == "lightgbm_pred_contrib"
    assert answer["explanation"]["output"] == "log_odds"
    _check_additive(answer, _log_odds(answer["scores"]), FEATURES, top=2)
    first = answer["explanation"]["rows"][0]["contributions"][0]
    assert first["value"] == rows[0][first["feature"]]  # the row's value, as sent
    # The same rows without explain: the same scores, and no explanation.
    plain = httpx.post(f"{server.url}/predict/{name}", json={"rows": rows}, timeout=30).json()
    assert plain["scores"] == answer["scores"] and "explanation" not in plain


@SQLITE
def test_hist_gradient_boosting_explained_by_tree_shap(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    name = _production(client, fraud_request, "sklearn", NUMBERS, max_iter=15)
    answer = _explain(server, name, _rows(server, NUMBERS, 6), top=5)
    assert answer["explanation"]["method"] == "tree_shap"
    assert answer["explanation"]["output"] == "log_odds"
    _check_additive(answer, _log_odds(answer["scores"]), NUMBERS, top=5)
    assert all(r["others"] == 0 for r in answer["explanation"]["rows"])


@SQLITE
def test_one_hot_model_explained_by_kernel_shap_on_the_request_columns(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    name = _production(client, fraud_request, "sklearn", FEATURES,
                       estimator="sklearn.linear_model.LogisticRegression")
    answer = _explain(server, name, _rows(server, FEATURES, 3), top=3)
    assert answer["explanation"]["method"] == "kernel_shap"
    assert answer["explanation"]["output"] == "score"
    # One-hot columns come back as their feature: charge_country, never charge_country_US.
    _check_additive(answer, np.asarray(answer["scores"]), FEATURES, top=3)

    too_many = httpx.post(f"{server.url}/predict/{name}", timeout=30, json={
        "rows": _rows(server, FEATURES, 21), "explain": True})
    assert too_many.status_code == 422
    assert "rows: 21 rows to explain" in too_many.json()["message"]
    bad_top = httpx.post(f"{server.url}/predict/{name}", timeout=30, json={
        "rows": _rows(server, FEATURES, 1), "explain": True, "explain_top": 0})
    assert bad_top.status_code == 422 and "explain_top" in bad_top.text


@SQLITE
def test_a_multiclass_version_is_a_422_that_says_why(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    table = pd.read_parquet(server.home / "data" / "tiny.parquet")
    table["amount_band"] = pd.cut(table["charge_amount"], [-np.inf, 20, 80, np.inf],
                                  labels=["low", "mid", "high"]).astype(str)
    table.to_parquet(server.home / "data" / "bands-explain.parquet")
    request = copy.deepcopy(fraud_request)
    request["data"]["features"]["names"] = ["created_at", "charge_amount", "hour_of_day",
                                            "amount_band"]
    request["filters"] = []
    request["train"] |= {"label": "amount_band"}
    name = _production(client, request, "Tiny", ["charge_amount", "hour_of_day"],
                       path="bands-explain.parquet")
    rows = _rows(server, ["charge_amount", "hour_of_day"], 2)
    assert httpx.post(f"{server.url}/predict/{name}", json={"rows": rows}).status_code == 200
    refused = httpx.post(f"{server.url}/predict/{name}", timeout=60,
                         json={"rows": rows, "explain": True})
    assert refused.status_code == 422
    assert refused.json()["message"].startswith(
        f"explain: not available for version 1 of {name!r}: it is a classifier of 3 classes")
