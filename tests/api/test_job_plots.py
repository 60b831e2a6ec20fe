"""``GET /jobs/{id}/plots`` through the real server: the curves are scikit-learn's on the
holdout files the job stored, cut to at most 200 points; each task gets its own plots; a job
that has not succeeded, or does not exist, is refused."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from modelyard.client import Client
from tests.conftest import ServerProcess, with_workflow

SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _trained(client: Client, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    job_id = client.train(request)
    done = client.wait(job_id, timeout=120)
    return job_id, done["result"]


def _tsv(path: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(Path(path).read_bytes()), sep="\t")


def _plots(server: ServerProcess, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/jobs/{job_id}/plots", timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@SQLITE
def test_a_binary_jobs_curves_are_sklearns_on_its_stored_holdout(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    job_id, result = _trained(client, fraud_request)
    plots = _plots(server, job_id)
    labels = _tsv(result["evaluation_holdout_label_path"])["label"].to_numpy()
    scores = _tsv(result["evaluation_holdout_data_path"])["score"].to_numpy()
    y = (labels.astype(str) == plots["positive_class"]).astype(int)
    fpr, tpr, _ = skm.roc_curve(y, scores)
    roc = plots["roc"]
    assert 2 <= len(roc["x"]) <= 200 and len(roc["x"]) == len(roc["y"])
    exact = set(zip(fpr.tolist(), tpr.tolist(), strict=True))
    assert all(point in exact for point in zip(roc["x"], roc["y"], strict=True))
    assert (roc["x"][0], roc["y"][0], roc["x"][-1], roc["y"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert roc["area"] == pytest.approx(result["metrics"]["roc_auc"], rel=1e-9)
    assert plots["precision_recall"]["area"] == pytest.approx(result["metrics"]["pr_auc"])
    observed, predicted = __import__("sklearn.calibration").calibration.calibration_curve(
        y, scores, n_bins=10)
    assert plots["calibration"]["x"] == pytest.approx(predicted.tolist())
    assert plots["calibration"]["y"] == pytest.approx(observed.tolist())
    by_class = [sum(h["counts"]) for h in plots["score_histograms"]]
    assert by_class == [int((y == 0).sum()), int((y == 1).sum())]
    assert plots["task"] == "binary" and plots["holdout_rows"] == len(y)
    assert plots["confusion"] is None and plots["residuals"] is None
    (listed,) = httpx.get(f"{server.url}/jobs", params={"search": job_id}).json()["jobs"]
    assert listed["main_metric"] == {"name": "roc_auc", "higher_is_better": True,
                                     "value": result["metrics"]["roc_auc"]}


@SQLITE
def test_regression_gets_residuals_and_multiclass_a_confusion_matrix(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    fraud_request["data"]["features"]["path"] = "tiny.parquet"  # type: ignore[index]
    regression = with_workflow(fraud_request, "sklearn", max_iter=20)
    regression["train"] = {**regression["train"], "label": "charge_amount",  # type: ignore[dict-item]
                           "classifier_features": ["charge_type", "card_age_days"]}
    multiclass = with_workflow(fraud_request, "sklearn", max_iter=10)
    multiclass["train"] = {**multiclass["train"], "label": "charge_country",  # type: ignore[dict-item]
                           "classifier_features": ["charge_amount", "hour_of_day"]}
    reg_id, reg_result = _trained(client, regression)
    multi_id, multi_result = _trained(client, multiclass)

    plots = _plots(server, reg_id)
    assert plots["task"] == "regression" and plots["roc"] is None
    assert sum(plots["residuals"]["counts"]) == plots["holdout_rows"]
    binned = plots["predicted_vs_actual"]
    assert len(binned["x"]) == 50 and binned["x"] == sorted(binned["x"])
    actual = _tsv(reg_result["evaluation_holdout_label_path"])["label"].to_numpy()
    predicted = _tsv(reg_result["evaluation_holdout_data_path"])["score"].to_numpy()
    assert np.average(binned["y"], weights=[len(b) for b in np.array_split(actual, 50)]) == (
        pytest.approx(predicted.mean())), "the bins' means weigh up to the mean prediction"

    plots = _plots(server, multi_id)
    labels = _tsv(multi_result["evaluation_holdout_label_path"])["label"].astype(str)
    scores = _tsv(multi_result["evaluation_holdout_data_path"])
    predicted = scores.idxmax(axis=1).str.removeprefix("score_")
    confusion = plots["confusion"]
    assert confusion["matrix"] == skm.confusion_matrix(
        labels, predicted, labels=confusion["labels"]).tolist()
    assert sorted(confusion["labels"]) == sorted(set(labels))
    assert np.trace(confusion["matrix"]) / len(labels) == pytest.approx(
        multi_result["metrics"]["accuracy"])


@SQLITE
def test_plots_of_an_unknown_or_unfinished_job_are_refused(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    unknown = httpx.get(f"{server.url}/jobs/{uuid.uuid4().hex}/plots", timeout=30)
    assert unknown.status_code == 404 and "no job" in unknown.json()["message"]
    failing = dict(fraud_request, data={**fraud_request["data"],  # type: ignore[dict-item]
                                        "features": {**fraud_request["data"]["features"],  # type: ignore[index]
                                                     "path": "corrupt.parquet"}})
    job_id = client.train(failing)
    client.wait(job_id, timeout=60, raise_on_failure=False)
    refused = httpx.get(f"{server.url}/jobs/{job_id}/plots", timeout=30)
    assert refused.status_code == 409
    assert refused.json()["message"] == (
        f"job {job_id} ended failed without a holdout evaluation; its plots exist only for a "
        "succeeded job")
