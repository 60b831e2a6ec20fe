"""Registration on a real database session (SQLite, and PostgreSQL when configured): numbering
per (model, tenant), one implementation for one version and for a batch, auto-promotion in
order, and the audit trail it writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from modelyard.registry import store
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.sql import make_engine, session_factory, upgrade
from tests.conftest import fresh_db_url

HOLDOUT = {"sampling": {"sampling_function": "RANDOM_FRACTION"}, "path": "p.parquet"}


@pytest.fixture(params=["sqlite", "postgres"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    """A session on a fresh database: a SQLite file, or a PostgreSQL database when configured."""
    engine = make_engine(fresh_db_url(request.param, tmp_path))
    upgrade(engine)
    try:
        with session_factory(engine)() as s:
            yield s
    finally:
        engine.dispose()


def _item(model_name: str, tenant: str = GLOBAL_TENANT, auc: float = 0.7,
          job_id: str | None = None) -> dict[str, Any]:
    return {"model_name": model_name, "tenant": tenant, "model_id": f"sha256:{auc}",
            "job_id": job_id, "metrics": {"roc_auc": auc}, "model_meta": {},
            "holdout": HOLDOUT}


def _stages(session: Session, model_name: str) -> dict[tuple[str, int], str]:
    return {(v.tenant, v.version): v.stage for v in store.list_versions(session, model_name)}


def test_versions_are_numbered_per_model_and_tenant_in_a_batch_and_one_by_one(
        session: Session) -> None:
    first = store.register_versions(session, [
        _item("fraud", job_id="j1"), _item("fraud", "acme"), _item("fraud"), _item("churn")])
    single = store.register_version(session, **_item("fraud", "acme"))
    session.commit()

    assert [(r.model_name, r.tenant, r.version, r.stage) for r in [*first, single]] == [
        ("fraud", GLOBAL_TENANT, 1, "candidate"), ("fraud", "acme", 1, "candidate"),
        ("fraud", GLOBAL_TENANT, 2, "candidate"), ("churn", GLOBAL_TENANT, 1, "candidate"),
        ("fraud", "acme", 2, "candidate")]
    events = store.events_of(session, "fraud")
    assert len(events) == 4 and all(e.actor == "modelyard" for e in events)
    assert events[-1].reason == "trained by job j1" and events[0].reason == "registered"


def test_auto_promotion_judges_each_new_version_in_order(session: Session) -> None:
    store.set_policy(session, "fraud", auto_promote=True, metric="roc_auc",
                     min_improvement=0.01, higher_is_better=True, require_same_holdout=True,
                     actor="ops")
    registered = store.register_versions(session, [
        _item("fraud", auc=0.70), _item("fraud", "acme", auc=0.60),
        _item("fraud", auc=0.80), _item("fraud", auc=0.805), _item("other", auc=0.9)])
    session.commit()

    # v1: nothing to beat; v2 beats v1 by the margin; v3 does not beat v2 by it.
    assert [r.stage for r in registered] == [
        "production", "production", "production", "candidate", "candidate"]
    assert _stages(session, "fraud") == {
        (GLOBAL_TENANT, 1): "archived", (GLOBAL_TENANT, 2): "production",
        (GLOBAL_TENANT, 3): "candidate", ("acme", 1): "production"}
    refusal = next(e for e in store.events_of(session, "fraud", GLOBAL_TENANT)
                   if e.version == 3 and e.actor == "policy")
    assert refusal.reason.startswith("not promoted: roc_auc 0.8050 is not >= 0.8100")


def test_an_item_with_an_unknown_field_is_refused(session: Session) -> None:
    with pytest.raises(TypeError, match="no field 'modelid'"):
        store.register_versions(session, [{**_item("fraud"), "modelid": "sha256:x"}])


def test_each_version_of_a_batch_gets_its_own_audit_event(session: Session) -> None:
    items = [_item("fleet", f"t{i}", job_id=f"j{i}") for i in range(5)] + [
        _item("fleet", "t2", job_id="again")]
    registered = store.register_versions(session, [{**i, "fleet_child": True} for i in items])
    session.commit()

    assert [(r.tenant, r.version) for r in registered] == [
        ("t0", 1), ("t1", 1), ("t2", 1), ("t3", 1), ("t4", 1), ("t2", 2)]
    versions = {(v.tenant, v.version): v for v in store.list_versions(session, "fleet")}
    for item, r in zip(items, registered, strict=True):  # ids matched back to their rows
        assert versions[(r.tenant, r.version)].job_id == item["job_id"]
    events = store.events_of(session, "fleet")
    assert sorted((e.version_id, e.tenant, e.version, e.reason) for e in events) == sorted(
        (versions[(r.tenant, r.version)].id, r.tenant, r.version,
         f"trained by job {item['job_id']}") for item, r in zip(items, registered, strict=True))


def test_events_recorded_together_are_one_per_version_in_order(session: Session) -> None:
    store.register_versions(session, [_item("m", "a"), _item("m", "b")])
    rows = {v.tenant: v for v in store.list_versions(session, "m")}
    store.record_events(session, [
        (rows["a"], Stage.candidate, Stage.candidate, "fleet", "not promoted: a"),
        (rows["b"], None, Stage.candidate, "ops", "not promoted: b")])
    store.record_events(session, [])
    session.commit()

    recorded = [(e.tenant, e.from_stage, e.to_stage, e.actor, e.reason)
                for e in store.events_of(session, "m") if e.reason.startswith("not promoted")]
    assert recorded == [("b", None, "candidate", "ops", "not promoted: b"),
                        ("a", "candidate", "candidate", "fleet", "not promoted: a")]  # newest first
