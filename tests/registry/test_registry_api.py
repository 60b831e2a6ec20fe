"""The registry through the real server: every succeeded job registers a version; stages, the
approval gate, one production per model, rollback, compare, and the audit trail."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelyard.client import Client
from modelyard.errors import Conflict, NotFound, RequestError
from tests.conftest import with_workflow
from tests.registry.conftest import train_version


def test_succeeded_jobs_register_numbered_candidates(client: Client,
                                                     model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    v1 = train_version(client, model_request)
    v2 = train_version(client, model_request, max_iter=40)
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["stage"] == v2["stage"] == "candidate"
    assert v1["tenant"] == "*"
    job = client.result(v1["job_id"])["result"]
    assert v1["model_id"] == job["model_id"] and v1["metrics"] == job["metrics"]
    assert v1["model"]["features"] == model_request["train"]["classifier_features"]
    summary = next(m for m in client.models() if m["model_name"] == name)
    assert summary["versions"] == 2 and summary["production"] == {}
    failed = client.train(with_workflow(model_request, "Raises"))
    with pytest.raises(Exception, match="boom"):
        client.wait(failed, timeout=60)
    assert len(client.versions(name)) == 2  # a failed job registers nothing


def test_production_needs_a_named_approval(client: Client, model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    v1 = train_version(client, model_request)
    with pytest.raises(Conflict, match=r"needs an approval: POST /models/.*/versions/1/approve"):
        client.set_stage(name, 1, "production", actor="kelley")
    with pytest.raises(RequestError, match="user"):
        client.approve(name, 1, user="", comment="looks good")
    approved = client.approve(name, v1["version"], user="kelley", comment="AUC fine, ship it")
    assert approved["stage"] == "production"
    events = client.events(name)
    assert events[0]["to_stage"] == "production" and events[0]["actor"] == "kelley"
    assert "AUC fine, ship it" in events[0]["reason"]


def test_one_production_version_and_rollback(client: Client,
                                             model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    for params in ({}, {"max_iter": 30}, {"max_iter": 40}):
        train_version(client, model_request, **params)
    client.approve(name, 1, user="ana", comment="first")
    client.set_stage(name, 2, "shadow", actor="ana", reason="watch it on live traffic")
    client.set_stage(name, 3, "shadow", actor="ana")
    client.approve(name, 2, user="bo", comment="shadow looked good")
    stages = {v["version"]: v["stage"] for v in client.versions(name)}
    assert stages == {1: "archived", 2: "production", 3: "shadow"}
    assert [v["version"] for v in client.versions(name, stage="production")] == [2]

    back = client.rollback(name, actor="carol", reason="v2 misbehaves")
    assert back["version"] == 1
    stages = {v["version"]: v["stage"] for v in client.versions(name)}
    assert stages == {1: "production", 2: "archived", 3: "shadow"}
    trail = [(e["version"], e["from_stage"], e["to_stage"], e["actor"])
             for e in client.events(name)][:2]
    assert trail == [(1, "archived", "production", "carol"), (2, "production", "archived", "carol")]
    with pytest.raises(Conflict, match="cannot become shadow"):
        client.set_stage(name, 1, "shadow", actor="carol")


def test_rollback_without_history_is_refused(client: Client,
                                             model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    train_version(client, model_request)
    with pytest.raises(Conflict, match="no earlier production version"):
        client.rollback(name, actor="dan")


def test_auto_promotion_follows_the_metric_rule(client: Client,
                                                model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    client.set_policy(name, actor="ops", auto_promote=True, metric="roc_auc",
                      min_improvement=0.002)
    dummy = {"estimator": "sklearn.dummy.DummyClassifier"}  # roc_auc 0.5: always worse
    first = train_version(client, model_request, max_iter=None, **dummy)
    assert first["stage"] == "production"  # nothing to beat yet
    better = train_version(client, model_request, max_iter=60)
    worse = train_version(client, model_request, max_iter=None, **dummy)
    assert better["metrics"]["roc_auc"] >= first["metrics"]["roc_auc"] + 0.002
    stages = {v["version"]: v["stage"] for v in client.versions(name)}
    assert stages[better["version"]] == "production"
    assert stages[first["version"]] == "archived"
    assert stages[worse["version"]] == "candidate"
    refusal = next(e for e in client.events(name) if e["version"] == worse["version"]
                   and e["actor"] == "policy")
    assert "roc_auc" in refusal["reason"] and "is not >=" in refusal["reason"]

    # A different holdout window is compared on its own rows, production scored on them too.
    shifted = copy.deepcopy(model_request)
    shifted["holdout_sampling"]["date_range_sampling"]["start_date"] = "2018-11-01"
    other = train_version(client, shifted, max_iter=80)
    champion = client.version(name, other["version"])["evidence"]["champion"]
    assert champion["version"] == better["version"]
    verdict = client.events(name)[0]["reason"]
    rows = other["metrics"]["holdout_rows"]
    assert f"on the same {rows:,} holdout rows" in verdict
    assert f"production version {better['version']}: {champion['metrics']['roc_auc']:.4f}" in (
        verdict)


def test_compare_two_versions(client: Client, model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    a = train_version(client, model_request, max_iter=5)
    b = train_version(client, model_request, max_iter=50)
    out = client.compare(name, a["version"], b["version"])
    assert out["same_holdout"] is True
    auc = next(r for r in out["metrics"] if r["metric"] == "roc_auc")
    assert auc["a"] == a["metrics"]["roc_auc"] and auc["b"] == b["metrics"]["roc_auc"]
    assert auc["delta"] == pytest.approx(b["metrics"]["roc_auc"] - a["metrics"]["roc_auc"])
    with pytest.raises(NotFound, match="has no version 99"):
        client.compare(name, 1, 99)
