"""Serving's robustness through the real server: one request's bad rows never fail another's,
and rows are checked against the version's training schema before they are scored (text is
never read as a number, missing values only where training had them). The cap on rows per
request is with the other limits, in tests/api/test_limits.py."""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard.client import Client
from tests.conftest import ServerProcess, with_workflow
from tests.serving.test_serving_api import FEATURES, _model, _predict, _rows

# Rows are checked and scored by serving, whatever the job store: SQLite alone.
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _train(client: Client, request: dict[str, Any], workflow: str, **params: Any
           ) -> dict[str, Any]:
    """A version of its own (a unique model name) in production; returns its registry row."""
    request = copy.deepcopy(request)
    name = f"robust-{uuid.uuid4().hex[:8]}"
    request["metadata"]["model_name"] = name
    client.wait(client.train(with_workflow(request, workflow, **params)), 120)
    client.approve(name, 1, user="kelley", comment="to production")
    (version,) = client.versions(name)
    return {"name": name, **version}


@SQLITE
def test_one_requests_bad_rows_never_fail_anothers(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    # A custom workflow (a numeric column selector in front of a logistic regression): a null
    # among the numbers changes the column's dtype, and a batch holding it fails as a whole.
    version = _train(client, fraud_request, "Tiny")
    name = version["name"]
    good = _rows(server, 24, seed=11)
    model = _model(server, version["model_id"])
    expected = model.predict_proba(pd.DataFrame(good)[FEATURES])[:, 1]
    nulls = [dict(r) for r in _rows(server, 2, seed=12)]
    nulls[1]["charge_amount"] = None
    text = [dict(r) for r in _rows(server, 3, seed=13)]
    text[2]["charge_amount"] = "abc"
    answers: list[tuple[str, int, httpx.Response]] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def send(kind: str, k: int) -> None:
        with httpx.Client(timeout=60) as http:
            start.wait()
            for i in range(12):
                if kind == "good":
                    j = (k * 3 + i) % 22
                    rows = good[j:j + 1 + i % 3]
                else:
                    rows = nulls if k == 0 else text
                    j = -1
                r = http.post(f"{server.url}/predict/{name}", json={"rows": rows})
                with lock:
                    answers.append((kind, j, r))

    threads = [threading.Thread(target=send, args=("good", k)) for k in range(8)]
    threads += [threading.Thread(target=send, args=("bad", k)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 120
    for kind, j, r in answers:
        if kind == "good":
            assert r.status_code == 200, r.text
            scores = r.json()["scores"]
            np.testing.assert_allclose(scores, expected[j:j + len(scores)], rtol=1e-9)
        else:
            assert r.status_code == 422, r.text
            message = r.json()["message"]
            assert ("rows.1.charge_amount: null" in message
                    or "rows.2.charge_amount: 'abc' is text" in message), message


@SQLITE
def test_rows_are_checked_against_the_training_schema(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    version = _train(client, fraud_request, "sklearn", max_iter=5)
    name = version["name"]
    assert version["model"]["missing_values"] == []  # the demo data has none

    def refused(column: str, value: Any, row: int = 0) -> str:
        rows = _rows(server, 2, seed=21)
        rows[row][column] = value
        answer = _predict(server.url, name, rows)
        assert answer.status_code == 422, answer.text
        return str(answer.json()["message"])

    # Text is never read as a number, not even text that looks like one.
    assert refused("charge_amount", "abc").startswith(
        "rows.0.charge_amount: 'abc' is text, but version 1 of")
    assert "a number (double)" in refused("charge_amount", "12.5", row=1)
    assert "rows.1.card_age_days: true is a boolean" in refused("card_age_days", True, row=1)
    assert "rows.0.charge_country: 7 is a number" in refused("charge_country", 7)
    assert "text (string)" in refused("charge_type", {"a": 1})
    missing = refused("charge_amount", None)
    assert missing.startswith("rows.0.charge_amount: null, but")
    assert "had no missing values in this column" in missing
    # JSON has no NaN or Infinity, but Python's parser reads them: NaN is missing here.
    def raw(amount: bytes) -> httpx.Response:
        return httpx.post(f"{server.url}/predict/{name}", content=b'{"rows": [{"charge_type": '
                          b'"card", "charge_amount": ' + amount + b', "charge_country": "US", '
                          b'"card_age_days": 3, "hour_of_day": 1}]}',
                          headers={"content-type": "application/json"})

    nan = raw(b"NaN")
    assert nan.status_code == 422 and "rows.0.charge_amount: NaN, but" in nan.json()["message"]
    infinite = raw(b"-Infinity")
    assert infinite.status_code == 422
    assert infinite.json()["message"].startswith(
        "rows.0.charge_amount: -inf is not a finite number")
    assert _predict(server.url, name, _rows(server, 2, seed=21)).status_code == 200


@SQLITE
def test_missing_values_are_accepted_where_training_had_them(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    frame = pd.read_parquet(server.home / "data" / "payments.parquet")
    frame.loc[frame.index[::7], "charge_amount"] = None
    data = f"amount-nulls-{uuid.uuid4().hex[:8]}.parquet"
    frame.to_parquet(server.home / "data" / data)
    request = copy.deepcopy(fraud_request)
    request["data"]["features"]["path"] = data
    version = _train(client, request, "sklearn", max_iter=5)
    assert version["model"]["missing_values"] == ["charge_amount"]
    rows = _rows(server, 3, seed=31)
    rows[1]["charge_amount"] = None
    answer = _predict(server.url, version["name"], rows)
    assert answer.status_code == 200, answer.text
    direct = _model(server, version["model_id"]).predict_proba(pd.DataFrame(rows)[FEATURES])
    np.testing.assert_allclose(answer.json()["scores"], direct[:, 1], rtol=1e-9)
    rows[2]["charge_country"] = None  # that column had none
    answer = _predict(server.url, version["name"], rows)
    assert answer.status_code == 422
    assert answer.json()["message"].startswith("rows.2.charge_country: null, but")
    rows[2]["charge_country"], rows[0]["charge_amount"] = "US", "abc"
    assert "rows.0.charge_amount: 'abc' is text" in _predict(
        server.url, version["name"], rows).json()["message"]
