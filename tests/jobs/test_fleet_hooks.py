"""The fleet hooks the dispatcher calls, on a real store and without a worker: a plan's
tenants are queued as it writes them and when it finishes, each once; a not-started pack-mate is
queued again once, a failed plan cancels what was queued beside it, and the last child's end
graduates, routes and finishes the fleet."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.jobs import fleet, recovery, store
from modelyard.jobs.fleet_records import children_of, graduation_of, role_of
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.protocol.results import FailureKind, FleetPlan, FleetRole, TenantPlan, failure
from modelyard.registry.tables import FleetTenantRow
from tests.jobs.conftest import queue_jobs, request_json


def _plan(*tenants: TenantPlan, segments: list[str] | None = None) -> FleetPlan:
    return FleetPlan(root="/fleets/p", column="merchant_id",
                     segment_column="charge_country" if segments else None, global_model=True,
                     segments=segments or [], tenants=list(tenants),
                     row_counts={"filtered": 9_999})


def _tenant(name: str, rows: int, qualifies: bool = True, segment: str | None = None
            ) -> TenantPlan:
    return TenantPlan(name, rows, rows * 4 // 5, rows - rows * 4 // 5, qualifies,
                      "enough rows" if qualifies else "too few training rows", segment,
                      f"/fleets/p/{name}.arrow" if qualifies else None)


def _running_fleet(session: Session, tmp_path: Path, **tenants: Any) -> JobRow:
    request = request_json(column="merchant_id", **tenants)
    (parent_id,) = queue_jobs(session, 1, tmp_path, kind="fleet", request=request)
    store.transition(session, parent_id, JobState.running, "its plan runs")
    session.commit()
    return store.read_job(session, parent_id)


def _end(session: Session, job_id: str, to: JobState, result: dict[str, Any] | None = None
         ) -> None:
    store.transition(session, job_id, JobState.running, "claimed")
    if to is JobState.succeeded:
        store.finish_many(session, {job_id: {"result": result, "model_id": None,
                                             "git_commit": None}}, "trained")
    else:
        store.transition(session, job_id, to, "it broke",
                         exception_info=failure(FailureKind.workflow_error, "it broke"))


def _log(job: JobRow) -> str:
    assert job.log_file is not None
    path = Path(job.log_file)
    return path.read_text() if path.exists() else ""


def test_a_finished_plan_queues_segments_then_tenants_largest_first(session: Session,
                                                                    tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path, segment_column="charge_country")
    plan = _plan(_tenant("small", 500, segment="EU"), _tenant("big", 5_000, segment="EU"),
                 _tenant("tiny", 10, qualifies=False, segment="EU"), segments=["EU"])
    assert fleet.on_plan_finished(session, parent.id, plan) == 3
    session.commit()

    children = children_of(session, parent.id)
    assert [(c.kind, c.tenant, c.rows) for c in children] == [
        ("segment", "segment:EU", None), ("tenant", "big", 5_000), ("tenant", "small", 500)]
    assert [role_of(c) for c in children] == [
        FleetRole("segment", "segment:EU", tenant_column="merchant_id", segment="EU"),
        FleetRole("tenant", "big", segment="EU"), FleetRole("tenant", "small", segment="EU")]
    segment, big, _ = children
    segment_filter = segment.request["filters"][-1]
    assert (segment_filter["feature_name"], segment_filter["predicate"],
            segment_filter["feature_value"]["string_val"]) == ("charge_country", "Equals", "EU")
    assert big.request["data"]["features"]["path"] == "/fleets/p/big.arrow"
    assert big.request["filters"] == [] and big.request["tenants"] is None
    assert "merchant_id" in big.request["data"]["features"]["names"]
    parent = store.read_job(session, parent.id, fresh=True)
    assert (parent.state, parent.current_step) == ("running", "children")
    assert parent.result == {"row_counts": {"filtered": 9_999}}
    assert FleetPlan.from_json(parent.fleet or {}) == plan
    assert "fleet planned: 3 more models queued" in _log(parent)


def test_tenants_queued_while_the_plan_runs_are_not_queued_again_by_the_plan(
        session: Session, tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path, segment_column="charge_country")
    big, mid, small = (_tenant("big", 5_000, segment="EU"), _tenant("mid", 2_000, segment="US"),
                       _tenant("small", 500, segment="EU"))
    assert fleet.on_tenants_ready(session, parent.id, [big], ["EU", "US"]) == 3
    assert fleet.planning(session, parent.id)  # a waiting pack keeps waiting for the rest
    assert fleet.on_tenants_ready(session, parent.id, [mid], ["EU", "US"]) == 1
    plan = _plan(small, big, mid, _tenant("tiny", 10, qualifies=False, segment="EU"),
                 segments=["EU", "US"])
    assert fleet.on_plan_finished(session, parent.id, plan) == 1
    session.commit()

    children = children_of(session, parent.id)
    assert [(c.kind, c.tenant, c.rows) for c in children] == [
        ("segment", "segment:EU", None), ("segment", "segment:US", None),
        ("tenant", "big", 5_000), ("tenant", "mid", 2_000), ("tenant", "small", 500)]
    assert role_of(children[3]) == FleetRole("tenant", "mid", segment="US")
    assert children[3].request["data"]["features"]["path"] == "/fleets/p/mid.arrow"
    assert not fleet.planning(session, parent.id)
    assert FleetPlan.from_json(parent.fleet or {}) == plan
    assert "fleet: 3 models queued while the plan runs" in _log(parent)
    assert "fleet planned: 1 more models queued" in _log(parent)


def test_a_plan_that_fails_after_queueing_tenants_cancels_them(session: Session,
                                                                tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path, global_model=False)
    fleet.on_tenants_ready(session, parent.id, [_tenant("a", 900), _tenant("b", 800)], [])
    a = next(c for c in children_of(session, parent.id) if c.tenant == "a")
    store.transition(session, a.id, JobState.running, "claimed")
    store.transition(session, parent.id, JobState.failed, "disk full")
    assert len(fleet.on_failed(session, parent.id, "disk full")) == 2  # running and queued
    session.commit()
    assert {c.state for c in children_of(session, parent.id)} == {"cancelled"}
    assert fleet.on_tenants_ready(session, parent.id, [_tenant("c", 700)], []) is None
    assert len(children_of(session, parent.id)) == 2


def test_a_plan_that_ends_after_its_fleet_was_cancelled_queues_nothing(
        session: Session, tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path)
    store.cancel_job(session, parent.id, "not wanted")
    assert fleet.on_plan_finished(session, parent.id, _plan(_tenant("a", 900))) is None
    assert children_of(session, parent.id) == []


def test_a_pack_mate_that_never_ran_is_queued_again_once(session: Session,
                                                         tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path, global_model=False)
    fleet.on_plan_finished(session, parent.id, _plan(_tenant("a", 900), _tenant("b", 800)))
    first = next(c for c in children_of(session, parent.id) if c.tenant == "b")
    store.transition(session, first.id, JobState.failed, "never reached",
                     exception_info=failure(FailureKind.not_started, "never reached"))

    again = fleet.requeue_not_started(session, first.id)
    session.commit()
    assert again is not None
    retry = store.read_job(session, again)
    assert (retry.kind, retry.tenant, retry.state) == ("tenant", "b", "queued")
    assert role_of(retry) == FleetRole("tenant", "b", requeued_from=first.id)
    assert f"queued again as job {again}" in _log(first)

    store.transition(session, again, JobState.failed, "never reached either")
    assert fleet.requeue_not_started(session, again) is None  # once
    assert len(children_of(session, parent.id)) == 3


def test_a_pack_mate_queued_while_the_plan_runs_is_queued_again_from_its_own_row(
        session: Session, tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path, global_model=False)
    fleet.on_tenants_ready(session, parent.id, [_tenant("a", 900, segment="EU")], [])
    (first,) = children_of(session, parent.id)
    store.transition(session, first.id, JobState.failed, "never reached",
                     exception_info=failure(FailureKind.not_started, "never reached"))
    again = fleet.requeue_not_started(session, first.id)  # no plan to read it from yet
    assert again is not None
    retry = store.read_job(session, again)
    assert (retry.tenant, retry.rows, retry.state) == ("a", 900, "queued")
    assert retry.request["data"]["features"]["path"] == "/fleets/p/a.arrow"
    assert role_of(retry) == FleetRole("tenant", "a", segment="EU", requeued_from=first.id)
    plan = _plan(_tenant("a", 900, segment="EU"))
    assert fleet.on_plan_finished(session, parent.id, plan) == 0  # nothing queued twice


def test_a_failed_plan_cancels_the_global_model_queued_beside_it(session: Session,
                                                                  tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path)
    global_id = fleet.queue_global(session, parent)
    assert global_id is not None
    store.transition(session, parent.id, JobState.failed, "empty tenant ids")
    assert fleet.on_failed(session, parent.id, "empty tenant ids") == [global_id]
    session.commit()
    glob = store.read_job(session, global_id, fresh=True)
    assert glob.state == "cancelled"
    assert store.transitions_of(session, global_id)[-1].reason == (
        f"its fleet {parent.id} failed: empty tenant ids")
    (plain,) = queue_jobs(session, 1, tmp_path)
    assert fleet.on_failed(session, plain, "anything") == []


def test_the_last_child_to_end_graduates_routes_and_finishes_the_fleet(
        session: Session, tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path)
    global_id = fleet.queue_global(session, parent)
    assert global_id is not None
    fleet.on_plan_finished(session, parent.id, _plan(
        _tenant("a", 900), _tenant("b", 800), _tenant("c", 10, qualifies=False)))
    a, b = (c.id for c in children_of(session, parent.id) if c.kind == "tenant")
    _end(session, global_id, JobState.succeeded, {"by_tenant": {"a": 0.70, "b": 0.90},
                                                  "metrics": {"task": "binary"}})
    _end(session, a, JobState.succeeded, {"metrics": {"task": "binary", "roc_auc": 0.80}})
    assert fleet.on_children_ended(session, [global_id, a]) == ({parent.id}, set())
    _end(session, b, JobState.succeeded, {"metrics": {"task": "binary", "roc_auc": 0.80}})
    assert fleet.on_children_ended(session, [b]) == ({parent.id}, {parent.id})
    session.commit()

    done = store.read_job(session, parent.id, fresh=True)
    assert done.state == "succeeded"
    counts = (done.result or {})["fleet"]
    assert (counts["total"], counts["succeeded"], counts["skipped"], counts["planned"]) == (
        4, 3, 1, True)
    graduated = {t: graduation_of(store.read_job(session, j, fresh=True))
                 for t, j in (("a", a), ("b", b))}
    assert graduated["a"] is not None and graduated["b"] is not None
    assert (graduated["a"].graduated, graduated["a"].fallback_job_id) == (True, global_id)
    assert graduated["b"].reason == "against the global model: roc_auc 0.8000 is not > 0.9000 " \
                                    "(margin 0)" and not graduated["b"].graduated
    levels = {r.tenant: (r.level, r.reason) for r in session.scalars(
        select(FleetTenantRow).where(FleetTenantRow.model_name == done.model_name))}
    # Levels come from what the registry has in production: these jobs registered nothing
    # (their results are written by hand), so no tenant is served, and each says why.
    chain = "not served: no production version for tenant {!r}, the global model; to serve it"
    assert levels["a"][0] == "none" and levels["a"][1].startswith(
        f"its own model graduated: {graduated['a'].reason}; {chain.format('a')}")
    assert levels["b"][0] == "none" and levels["b"][1].startswith(
        f"its own model did not graduate: {graduated['b'].reason}; {chain.format('b')}")
    assert levels["c"] == ("none", "too few training rows; " + chain.format("c")
                           + ", train a global model for the fleet (tenants.global_model)")
    summary = fleet.fleet_summary(session, done)
    assert [(t["tenant"], t["state"], t["level"]) for t in summary["tenants"]] == [
        ("a", "succeeded", "none"), ("b", "succeeded", "none"), ("c", "skipped", "none")]
    assert summary["counts"]["not_served"] == 3
    assert [t["tenant"] for t in summary["not_served"]] == ["a", "b", "c"]
    assert summary["tenants"][0]["graduation"] == graduated["a"].to_json()
    assert "fleet: every child has ended" in _log(done)


def test_a_fleet_whose_every_model_failed_fails(session: Session, tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path, global_model=False)
    fleet.on_plan_finished(session, parent.id, _plan(_tenant("a", 900), _tenant("b", 800)))
    for child in children_of(session, parent.id):
        _end(session, child.id, JobState.failed)
    assert fleet.advance_parents(session, [parent.id]) == {parent.id}
    session.commit()
    done = store.read_job(session, parent.id, fresh=True)
    assert done.state == "failed"
    assert (done.exception_info or {})["kind"] == "fleet_failed"
    assert (done.exception_info or {})["message"] == (
        "fleet done: 0 models, 2 failed, 0 tenants served by a fallback")
    levels = {r.tenant: r.level for r in session.scalars(select(FleetTenantRow))}
    assert levels == {"a": "none", "b": "none"}
    assert fleet.advance_parents(session, [parent.id]) == {parent.id}  # ended: nothing moves
    assert store.read_job(session, parent.id, fresh=True).state == "failed"


def test_a_server_restarted_while_its_plan_streamed_fails_the_plan_and_its_tenants_stop(
        session: Session, tmp_path: Path) -> None:
    parent = _running_fleet(session, tmp_path, global_model=False)
    fleet.on_tenants_ready(session, parent.id, [_tenant("a", 900), _tenant("b", 800)], [])
    a, b = children_of(session, parent.id)
    gone = f"{socket.gethostname()}/{2**22 + 7}/dead"  # above pid_max: its server is gone
    store.transition(session, a.id, JobState.running, "claimed")
    for job_id, step in ((parent.id, "partition"), (a.id, "train")):
        store.transition_fields(session, job_id, server_id=gone, current_step=step)
    session.commit()
    session.expire_all()  # as a restarted server reads them

    failed = recovery.fail_orphaned_jobs(session, socket.gethostname())
    session.commit()
    assert parent.id in failed
    states = {c.tenant: c.state for c in children_of(session, parent.id)}
    # The running tenant fails as lost, or is cancelled first with its failed plan.
    assert states["a"] in ("failed", "cancelled") and states["b"] == "cancelled"
    assert store.read_job(session, parent.id, fresh=True).state == "failed"
    assert store.transitions_of(session, b.id)[-1].reason.startswith(
        f"its fleet {parent.id} failed: the worker for this job vanished")
