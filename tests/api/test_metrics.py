"""``GET /metrics`` through the real server, parsed as Prometheus parses it: jobs by state and
their duration histograms, the steps', predict latency by model and serving's counters, and a
token on a server that has one.

SQLite alone: the figures come through the same store functions on both backends.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from modelyard.api.metrics import STORE_CACHE_SECONDS
from modelyard.client import Client
from tests.conftest import ServerProcess, scrape, wait_until, with_workflow

SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)
FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
TRAIN = {"kind": "train", "outcome": "succeeded"}
FAILED = {"kind": "train", "outcome": "failed"}


def _request(base: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    request = copy.deepcopy(base)
    request["metadata"]["model_name"] = name
    request["data"]["features"]["path"] = path
    return with_workflow(request, "Tiny")


@SQLITE
def test_a_trained_job_and_its_predictions_show_in_the_metrics(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    before = scrape(server.url)

    good = client.train(_request(fraud_request, name, "tiny.parquet"))
    bad = client.train(_request(fraud_request, f"{name}-bad", "corrupt.parquet"))
    client.wait(good, 120)
    assert client.wait(bad, 120, raise_on_failure=False)["status"]["transition"][
        "job_state"] == "failed"
    # The job store's figures are kept for a second (STORE_CACHE_SECONDS): two quick jobs can
    # end within the second that the scrape before them was read in.
    time.sleep(STORE_CACHE_SECONDS)
    after = scrape(server.url)

    assert after.value("modelyard_jobs", state="succeeded") >= 1
    assert after.value("modelyard_jobs", state="failed") >= 1
    assert after.value("modelyard_queue_depth") == after.value("modelyard_jobs", state="queued")
    count = "modelyard_job_duration_seconds_count"
    assert after.value(count, **TRAIN) - before.value(count, **TRAIN) == 1
    assert after.value(count, **FAILED) - before.value(count, **FAILED) == 1
    step = "modelyard_job_step_duration_seconds_count"
    assert after.value(step, step="train") - before.value(step, step="train") == 1
    assert after.value("modelyard_job_duration_seconds_sum", **TRAIN) > before.value(
        "modelyard_job_duration_seconds_sum", **TRAIN)

    client.approve(name, 1, user="kelley", comment="serve it")
    rows = pd.read_parquet(server.home / "data" / "tiny.parquet")[FEATURES].head(4)
    for _ in range(3):
        client.predict(name, rows.to_dict("records"))
    missing = httpx.post(f"{server.url}/predict/{name}-nope", json={"rows": [{"x": 1}]})
    assert missing.status_code == 404
    served = scrape(server.url)

    latency = "modelyard_predict_latency_seconds"
    assert served.value(f"{latency}_count", model=name) == 3
    assert served.value(f"{latency}_bucket", model=name, le="+Inf") == 3
    assert not [s for s in served.samples if s.labels.get("model") == f"{name}-nope"]
    delta = {metric: served.value(metric) - after.value(metric) for metric in (
        "modelyard_predicted_rows_total", "modelyard_model_loads_total",
        "modelyard_model_cache_hits_total")}
    assert delta == {"modelyard_predicted_rows_total": 12, "modelyard_model_loads_total": 1,
                     "modelyard_model_cache_hits_total": 2}
    stats = httpx.get(f"{server.url}/serving/stats").json()
    assert served.value("modelyard_production_log_dropped_rows_total") == stats[
        "production_dropped"]


@SQLITE
def test_a_cancelled_job_is_observed_as_cancelled(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    cancelled = {"kind": "train", "outcome": "cancelled"}
    count = "modelyard_job_duration_seconds_count"
    before = scrape(server.url).value(count, **cancelled)
    job_id = client.train(with_workflow(fraud_request, "Sleeps", seconds=120))
    wait_until(lambda: client.status(job_id)["transition"]["job_state"] == "running")
    client.cancel(job_id)
    # The dispatcher stops the worker at its next look at the store, within a second.
    wait_until(lambda: scrape(server.url).value(count, **cancelled) == before + 1, 15)


@SQLITE
def test_metrics_are_prometheus_text(server: ServerProcess) -> None:
    answer = httpx.get(f"{server.url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
    assert scrape(server.url).value("process_open_fds") > 0  # the process collector's


def test_metrics_need_a_token_on_a_server_that_has_one(token_env_server: ServerProcess
                                                        ) -> None:
    refused = httpx.get(f"{token_env_server.url}/metrics")
    assert refused.status_code == 401
    assert "missing or wrong bearer token" in refused.json()["message"]
    answer = scrape(token_env_server.url, token="s3cret")
    assert answer.value("modelyard_queue_depth") == 0
