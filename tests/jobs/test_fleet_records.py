"""A fleet's data on its job rows, typed: the JSON rows were written with before the types still
reads, the types write that same shape, and a tenant's graduation against its fallback."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.jobs.fleet_records import (
    FleetChild,
    Graduation,
    child_of,
    graduation_of,
    plan_of,
    role_of,
    set_graduation,
)
from modelyard.jobs.graduation import Rules
from modelyard.jobs.tables import JobRow
from modelyard.protocol.results import FleetPlan, FleetRole, TenantPlan
from modelyard.registry.policy import default_policy

# As rows hold them: a plan written before FleetPlan existed (no kind, no row_counts, a missing
# tenant without segment or path), and a tenant child with its graduation.
OLD_PLAN: dict[str, Any] = {
    "root": "/artifacts/fleets/p1", "column": "merchant_id", "segment_column": None,
    "global_model": True, "segments": [],
    "tenants": [
        {"tenant": "m1", "rows": 900, "train_rows": 700, "holdout_rows": 200,
         "qualifies": True, "reason": "enough rows for a model of its own", "segment": None,
         "path": "/artifacts/fleets/p1/tenants/t000000.arrow"},
        {"tenant": "m2", "rows": 0, "train_rows": 0, "holdout_rows": 0, "qualifies": False,
         "reason": "no rows for this tenant after the filters"},
    ],
}
GRADUATION: dict[str, Any] = {
    "metric": "roc_auc", "own": 0.81, "fallback": 0.77, "fallback_level": "global",
    "graduated": True, "reason": "own roc_auc 0.8100 beats global's 0.7700 on its holdout",
    "fallback_job_id": "g1"}
OLD_CHILD: dict[str, Any] = {"level": "tenant", "tenant": "m1", "segment": None,
                             "graduation": GRADUATION}


def _job(kind: str, fleet: dict[str, Any] | None) -> JobRow:
    return JobRow(id="j1", kind=kind, fleet=fleet)


def test_a_stored_plan_reads_as_a_fleet_plan() -> None:
    plan = plan_of(_job("fleet", OLD_PLAN))
    assert plan is not None
    assert (plan.column, plan.segment_column, plan.global_model, plan.row_counts) == (
        "merchant_id", None, True, {})
    assert plan.tenants == [
        TenantPlan("m1", 900, 700, 200, True, "enough rows for a model of its own", None,
                   "/artifacts/fleets/p1/tenants/t000000.arrow"),
        TenantPlan("m2", 0, 0, 0, False, "no rows for this tenant after the filters")]
    assert FleetPlan.from_json(plan.to_json()) == plan
    assert plan_of(_job("fleet", None)) is None  # not planned yet
    assert plan_of(_job("tenant", OLD_PLAN)) is None  # a child's fleet is not a plan


def test_a_stored_child_reads_as_its_role_and_graduation() -> None:
    job = _job("tenant", OLD_CHILD)
    assert role_of(job) == FleetRole(level="tenant", tenant="m1")
    graduation = graduation_of(job)
    assert graduation == Graduation("roc_auc", 0.81, 0.77, "global", True,
                                    GRADUATION["reason"], "g1")
    assert graduation is not None and graduation.to_json() == GRADUATION
    child = child_of(job)
    assert child is not None
    assert child.to_json() == {"level": "tenant", "tenant": "m1", "graduation": GRADUATION}
    assert child_of(_job("train", None)) is None and child_of(_job("fleet", OLD_PLAN)) is None


def test_a_child_is_written_in_the_stored_shape() -> None:
    role = FleetRole(level="global", tenant="*", tenant_column="merchant_id")
    assert FleetChild(role).to_json() == {"level": "global", "tenant": "*",
                                          "tenant_column": "merchant_id"}
    requeued = FleetRole(level="tenant", tenant="m1", segment="EU", requeued_from="j0")
    assert FleetChild.from_json(FleetChild(requeued).to_json()) == FleetChild(requeued)


def test_set_graduation_keeps_the_role() -> None:
    job = _job("tenant", {"level": "tenant", "tenant": "m1", "segment": "EU",
                          "requeued_from": "j0"})
    no_fallback = Graduation("rmse", 1.5, None, None, True, "no fallback model succeeded to beat")
    set_graduation(job, no_fallback)
    assert job.fleet == {"level": "tenant", "tenant": "m1", "segment": "EU",
                         "requeued_from": "j0",
                         "graduation": {"metric": "rmse", "own": 1.5, "fallback": None,
                                        "fallback_level": None, "graduated": True,
                                        "reason": "no fallback model succeeded to beat"}}
    assert graduation_of(job) == no_fallback
    with pytest.raises(ValueError, match="job j1 is a train job, not a fleet's child"):
        set_graduation(_job("train", None), no_fallback)


@pytest.mark.parametrize(("task", "own", "other", "margin", "beaten", "verdict"), [
    ("binary", 0.8, 0.7, 0.0, True, "roc_auc 0.8000 > 0.7000 (margin 0)"),
    ("binary", 0.7, 0.7, 0.0, False, "roc_auc 0.7000 is not > 0.7000 (margin 0)"),
    ("binary", 0.72, 0.7, 0.05, False, "roc_auc 0.7200 is not >= 0.7500 (margin 0.05)"),
    ("regression", 1.0, 2.0, 0.0, True, "rmse 1.0000 < 2.0000 (margin 0)"),
    ("regression", 3.0, 2.0, 0.0, False, "rmse 3.0000 is not < 2.0000 (margin 0)"),
])
def test_rules_judge_on_the_metrics_direction_and_the_policys_margin(
        task: str, own: float, other: float, margin: float, beaten: bool, verdict: str) -> None:
    policy = default_policy("fraud")
    policy.min_improvement = margin
    ok, sentence = Rules.of(task, policy).beats(own, other, "the global model")
    assert (ok, sentence) == (beaten, f"against the global model: {verdict}")
