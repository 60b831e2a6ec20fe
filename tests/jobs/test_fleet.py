"""Per-tenant fleets through the real server: one scan partitioned by tenant, skip rules,
graduation against the fallback, partial failure, retry of a subset, packing, serving levels.

What a worker or the executor decides (a killed pack, a cancel that kills the packs, the global
model cancelled by its failed plan) runs on SQLite alone: the store's part of each (a pack-mate
queued again once, a failed plan cancelling what was queued beside it, cancel_children) runs on
every backend in tests/jobs/test_fleet_hooks.py and tests/jobs/test_store.py. Partitioning,
claim order, packing, graduation against production, routing and a retry run on every backend."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from modelyard.client import Client
from tests.conftest import ServerProcess, with_workflow

START, END = pd.Timestamp("2018-10-01"), pd.Timestamp("2019-01-01")
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def fleet_request(base: dict[str, Any], **tenants: Any) -> dict[str, Any]:
    request = copy.deepcopy(base)
    request["metadata"]["model_name"] = f"fleet-{uuid.uuid4().hex[:8]}"
    request["data"]["features"]["names"].append("merchant_id")
    request["train"]["custom_params"] = {"max_iter": 15}
    request["tenants"] = {"column": "merchant_id", "min_training_rows": 400, **tenants}
    return request


def run_fleet(client: Client, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    job_id = client.train(request)
    answer = client.wait(job_id, timeout=300, raise_on_failure=False)
    assert answer["status"]["kind"] == "fleet"
    return job_id, client._call("GET", f"/jobs/{job_id}/fleet").json()


def expected_rows(server: ServerProcess, request: dict[str, Any]) -> pd.DataFrame:
    """Per tenant: training and holdout rows computed directly with pandas."""
    frame = pd.read_parquet(server.home / "data" / "payments.parquet")
    keep = frame["charge_country"].isin(request["filters"][0]["feature_value"]["string_vals"])
    frame = frame[keep & (frame["created_at"] < END)]
    return frame.assign(train=frame["created_at"] < START).groupby("merchant_id")["train"].agg(
        train_rows="sum", rows="size")


def test_fleet_partitions_once_and_trains_each_tenant_on_exactly_its_rows(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    request = fleet_request(fraud_request)
    parent, fleet = run_fleet(client, request)
    expected = expected_rows(server, request)
    counts = fleet["counts"]
    qualifying = expected[expected["train_rows"] >= 400]
    assert counts["succeeded"] == len(qualifying) + 1  # plus the global model
    assert counts["skipped"] == len(expected) - len(qualifying)
    assert counts["failed"] == counts["queued"] == counts["running"] == 0

    by_tenant = {t["tenant"]: t for t in fleet["tenants"]}
    for tenant, row in expected.iterrows():
        entry = by_tenant[tenant]
        assert (entry["rows"], entry["train_rows"]) == (row["rows"], row["train_rows"])
        if row["train_rows"] < 400:
            assert entry["state"] == "skipped"
            assert "too few training rows" in entry["reason"]
            assert entry["level"] == "global"
            continue
        job = client.result(entry["job_id"])["result"]
        assert job["row_counts"]["train"] == row["train_rows"]
        assert job["row_counts"]["holdout"] == row["rows"] - row["train_rows"]
        # Monitoring's reference is the tenant's own: a profile of exactly its training rows.
        profile = json.loads((server.home / "artifacts" / "jobs" / entry["job_id"]
                              / "profile.json").read_text())
        assert profile["rows"] == row["train_rows"] and job["profile_path"]
        detail = client.job(entry["job_id"])
        assert detail["status"]["parent_id"] == parent and detail["status"]["tenant"] == tenant
        assert "/fleets/" in detail["request"]["data"]["features"]["path"]  # its partition only
        graduation = entry["graduation"]
        assert graduation["metric"] == "roc_auc" and graduation["fallback_level"] == "global"
        assert entry["level"] == ("tenant" if graduation["graduated"] else "global")

    plan_steps = [s["name"] for s in client.status(parent)["steps"]]
    assert plan_steps.count("filter") == 1 and "partition" in plan_steps  # one scan
    children = client.jobs(parent_id=parent, limit=1000)["jobs"]
    assert len(children) == len(qualifying) + 1
    # Queued (and so claimed) largest first: the long fits start early, small ones fill the end.
    queued = [c["tenant"] for c in sorted(children, key=lambda c: c["created_at"])
              if c["kind"] == "tenant"]
    assert sorted(queued) == sorted(qualifying.index)
    sizes = [int(qualifying.loc[t, "rows"]) for t in queued]
    assert sizes == sorted(sizes, reverse=True)
    assert client.jobs(project=request["metadata"]["project"])["total"] == 1  # children hidden


def test_small_tenants_are_packed_into_shared_workers(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    request = fleet_request(fraud_request, min_training_rows=50, global_model=False)
    parent, fleet = run_fleet(client, request)
    pids = [client.status(t["job_id"])["worker_pid"] for t in fleet["tenants"] if t["job_id"]]
    assert len(pids) > 4 and len(set(pids)) < len(pids)  # several tenants per worker process
    # A pack asks for more when done instead of exiting: one worker per slot (2) at most.
    assert len(set(pids)) <= 2, pids
    # Tenants claimed together say so (a pack refilled with one tenant at a time does not; the
    # plan's first tenants come in small chunks, so which ones were claimed together varies).
    assert any("packed with" in client.logs(t["job_id"])[0] for t in fleet["tenants"]
               if t["job_id"])
    # No fallback to beat: each tenant graduates and serves its own model.
    for t in fleet["tenants"]:
        if t["job_id"]:
            assert t["graduation"] is not None, (t["state"], t["reason"])
    assert all(t["graduation"]["graduated"] and t["graduation"]["fallback_level"] is None
               and t["level"] == "tenant" for t in fleet["tenants"] if t["job_id"])


@SQLITE
def test_the_plans_worker_runs_tenants_as_soon_as_the_plan_has_ended(
    client: Client, fraud_request: dict[str, Any]
) -> None:
    parent, fleet = run_fleet(client, fleet_request(fraud_request, min_training_rows=50))
    plan = client.status(parent)
    tenants = [client.status(t["job_id"]) for t in fleet["tenants"] if t["job_id"]]
    # The plan's worker, warm, takes tenants rather than exit while a fresh one is forked.
    after_plan = [t for t in tenants if t["worker_pid"] == plan["worker_pid"]]
    assert after_plan, (plan["worker_pid"], [t["worker_pid"] for t in tenants])
    last = plan["steps"][-1]
    plan_end = (dt.datetime.fromisoformat(last["started_at"])
                + dt.timedelta(seconds=last["duration_s"]))
    for tenant in after_plan:
        assert dt.datetime.fromisoformat(tenant["steps"][0]["started_at"]) >= plan_end
    assert fleet["counts"]["succeeded"] == len(tenants) + 1  # and the global model


def test_a_fleet_trained_again_replaces_only_the_production_models_it_beats(
    client: Client, fraud_request: dict[str, Any]
) -> None:
    request = fleet_request(fraud_request, min_training_rows=50, global_model=False)
    constant = with_workflow(request, "sklearn", estimator="sklearn.dummy.DummyClassifier")
    run_fleet(client, constant)  # nothing to beat: every tenant's constant model serves it
    _, fleet = run_fleet(client, request)  # same model name: judged against production
    model = request["metadata"]["model_name"]
    judged = [t for t in fleet["tenants"] if t["job_id"]]
    assert len(judged) > 4
    stages = {(v["tenant"], v["version"]): v["stage"] for v in client.versions(model)}
    for tenant in judged:
        graduation, name = tenant["graduation"], tenant["tenant"]
        assert graduation["production_version"] == 1, graduation
        if graduation["own"] is None:  # one class in its holdout: nothing to compare
            assert not graduation["graduated"]
        else:  # production scored on the same rows: the constant model's 0.5
            assert graduation["production"] == pytest.approx(0.5)
            assert graduation["graduated"] == (graduation["own"] > 0.5)
        won = graduation["graduated"]
        assert stages[(name, 1)] == ("archived" if won else "production")
        assert stages[(name, 2)] == ("production" if won else "candidate")
        assert tenant["level"] == "tenant"  # its own production version, old or new
    winner = next(t["tenant"] for t in judged if t["graduation"]["graduated"])
    trail = [(e["version"], e["from_stage"], e["to_stage"], e["reason"])
             for e in client.events(model, tenant=winner)]
    assert (1, "production", "archived", "replaced by version 2") in trail
    assert any(v == 2 and to == "production" and reason.startswith("graduated")
               and "production version 1 on the same" in reason for v, _, to, reason in trail)


def test_one_tenant_failing_spares_the_others_and_can_be_retried(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any], tmp_path: Path
) -> None:
    marker = tmp_path / "fail"
    marker.write_text("x")
    request = with_workflow(fleet_request(fraud_request), "FailsForOne",
                            fail_marker=str(marker), fail_tenant="m00001")
    request["tenants"] = fleet_request(fraud_request)["tenants"]
    parent, fleet = run_fleet(client, request)
    failed = [t for t in fleet["tenants"] if t["state"] == "failed"]
    assert [t["tenant"] for t in failed] == ["m00001"]
    assert "fails on purpose" in failed[0]["reason"] and failed[0]["level"] == "global"
    assert fleet["counts"]["succeeded"] > 3
    assert client.status(parent)["transition"]["job_state"] == "succeeded"
    page = client._call("GET", f"/jobs/{parent}/fleet/tenants",
                        params={"failed": "true"}).json()
    assert [(t["tenant"], t["level"]) for t in page["lines"]] == [("m00001", "global")]
    assert page["matching"] == 1 and page["counts"]["failed"] == 1
    assert "fails on purpose" in page["lines"][0]["failure"]
    assert page["lines"][0]["failure"].startswith("workflow_error: ")

    marker.unlink()
    retried = httpx.post(f"{server.url}/jobs/{parent}/retry", json={}).json()
    assert retried["tenants"] == ["m00001"]
    for job_id in retried["job_ids"]:
        client.wait(job_id, timeout=120)
    fleet = client._call("GET", f"/jobs/{parent}/fleet").json()
    assert fleet["counts"]["failed"] == 0
    again = next(t for t in fleet["tenants"] if t["tenant"] == "m00001")
    assert again["state"] == "succeeded" and again["job_id"] == retried["job_ids"][0]
    unknown = httpx.post(f"{server.url}/jobs/{parent}/retry", json={"tenants": ["nobody"]})
    assert unknown.status_code == 409 and "nobody" in unknown.json()["message"]


@SQLITE
def test_a_tenant_that_kills_its_packed_worker_fails_alone(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any], tmp_path: Path
) -> None:
    marker = tmp_path / "kill"
    marker.write_text("x")
    request = with_workflow(fleet_request(fraud_request), "FailsForOne", how="kill",
                            fail_marker=str(marker), fail_tenant="m00003")
    request["tenants"] = {**fleet_request(fraud_request)["tenants"], "min_training_rows": 50,
                          "global_model": False}
    parent, fleet = run_fleet(client, request)
    failed = [t for t in fleet["tenants"] if t["state"] == "failed"]
    assert [t["tenant"] for t in failed] == ["m00003"], failed
    assert "killed by SIGKILL" in failed[0]["reason"]
    assert fleet["counts"]["succeeded"] == sum(1 for t in fleet["tenants"] if t["job_id"]) - 1
    # Its pack-mates never ran in that worker: each was queued again once, and succeeded.
    children = client.jobs(parent_id=parent, limit=1000)["jobs"]
    lost = [c for c in children if c["state"] == "failed" and c["tenant"] != "m00003"]
    assert lost, "the kill should have stranded at least one pack-mate"
    for child in lost:
        assert "not run: the worker it was packed into died while it ran job" in child["error"]
        log, _ = client.logs(child["job_id"])
        assert "queued again as job" in log
        tenant = next(t for t in fleet["tenants"] if t["tenant"] == child["tenant"])
        assert tenant["state"] == "succeeded" and tenant["job_id"] != child["job_id"]


def test_serving_routes_tenants_to_the_level_the_fleet_chose(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    request = fleet_request(fraud_request, segment_column="charge_country")
    parent, fleet = run_fleet(client, request)
    name = request["metadata"]["model_name"]
    assert {f["kind"] for f in fleet["fallbacks"]} == {"global", "segment"}
    graduated = [t for t in fleet["tenants"] if t["level"] == "tenant"]
    by_segment = [t for t in fleet["tenants"] if t["level"] == "segment"]
    assert graduated and by_segment
    for fallback in fleet["fallbacks"]:  # nothing in production to beat: the policy's "auto"
        version = next(v for v in client.versions(name, tenant=fallback["tenant"])
                       if v["job_id"] == fallback["job_id"])
        assert version["stage"] == "production", fallback
        assert fallback["graduation"]["reason"] == "no production version to beat"
    row = {"charge_type": "wallet", "charge_amount": 12.5, "charge_country": "US",
           "card_age_days": 30, "hour_of_day": 3}

    def served_by(tenant: str) -> str:
        r = httpx.post(f"{server.url}/predict/{name}", json={"tenant": tenant, "rows": [row]},
                       timeout=60)
        assert r.status_code == 200, r.text
        return str(r.json()["served_by_tenant"])

    assert served_by(graduated[0]["tenant"]) == graduated[0]["tenant"]
    assert served_by(by_segment[0]["tenant"]) == f"segment:{by_segment[0]['segment']}"
    assert served_by("a-brand-new-merchant") == "*"


@SQLITE
def test_global_model_trains_beside_the_plan_and_stops_if_the_plan_fails(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    frame = pd.read_parquet(server.home / "data" / "payments.parquet")
    frame.loc[frame.index[::50], "merchant_id"] = None  # the plan refuses empty tenant ids
    name = f"nulls-{uuid.uuid4().hex[:8]}.parquet"
    frame.to_parquet(server.home / "data" / name)
    request = with_workflow(fleet_request(fraud_request), "Sleeps", seconds=60)
    request["tenants"] = fleet_request(fraud_request)["tenants"]
    request["data"]["features"]["path"] = name

    parent = client.train(request)
    children = client.jobs(parent_id=parent)["jobs"]  # queued with the plan, not after it
    assert [(c["kind"], c["tenant"]) for c in children] == [("global", "*")]
    answer = client.wait(parent, timeout=120, raise_on_failure=False)
    assert answer["status"]["transition"]["job_state"] == "failed"
    assert "empty values" in answer["exception_info"]["message"]
    glob = client.wait(children[0]["job_id"], timeout=60, raise_on_failure=False)
    assert glob["status"]["transition"]["job_state"] == "cancelled"
    assert f"its fleet {parent} failed" in glob["status"]["transition"]["reason"]


@SQLITE
def test_cancelling_a_running_fleet_stops_its_packs_and_frees_their_slots(
    client: Client, fraud_request: dict[str, Any]
) -> None:
    request = with_workflow(fleet_request(fraud_request), "Sleeps", seconds=30)
    request["tenants"] = {**fleet_request(fraud_request)["tenants"], "min_training_rows": 50,
                          "global_model": False}
    parent = client.train(request)
    deadline = time.monotonic() + 60
    while not any(c["state"] == "running" and c["kind"] == "tenant"
                  for c in client.jobs(parent_id=parent, limit=1000)["jobs"]):
        assert time.monotonic() < deadline, "no tenant started"
        time.sleep(0.2)
    client.cancel(parent)
    answer = client.wait(parent, timeout=60, raise_on_failure=False)
    assert answer["status"]["transition"]["job_state"] == "cancelled"
    deadline = time.monotonic() + 30
    while True:  # the killed packs' last reports arrive after the cancel
        states = {c["state"] for c in client.jobs(parent_id=parent, limit=1000)["jobs"]}
        if states <= {"cancelled", "failed"}:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
    # The packs' slots are free again: a plain job runs at once, not after 30 s sleeps.
    started = time.monotonic()
    client.wait(client.train(fraud_request), timeout=60)
    assert time.monotonic() - started < 25
