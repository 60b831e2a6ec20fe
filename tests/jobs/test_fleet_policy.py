"""A fleet promotes only through its model's policy, through the real server: what passes its
rules goes to production (``fleet_promotion: auto``) or waits in shadow for an approval
(``shadow``); guard rails hold for its tenants and fallbacks; tenants nothing serves are listed
with what would fix it, and serving names the whole chain it tried."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from modelyard.client import Client
from tests.conftest import ServerProcess
from tests.jobs.test_fleet import fleet_request, run_fleet

ROW = {"charge_type": "wallet", "charge_amount": 12.5, "charge_country": "US",
       "card_age_days": 30, "hour_of_day": 3}


def test_a_shadow_policy_holds_a_fleets_models_for_approval(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    request = fleet_request(fraud_request)
    name = request["metadata"]["model_name"]
    client.set_policy(name, actor="ops", auto_promote=False, fleet_promotion="shadow")
    parent, fleet = run_fleet(client, request)
    assert fleet["state"] == "succeeded"
    stages = {(v["tenant"], v["job_id"]): v["stage"] for v in client.versions(name)}
    (glob,) = client.versions(name, tenant="*")
    assert glob["stage"] == "shadow"  # passed its rules (nothing to beat), waits for a person
    passed = [t for t in fleet["tenants"] if t["graduation"] and t["graduation"]["graduated"]]
    failed = [t for t in fleet["tenants"] if t["graduation"]
              and not t["graduation"]["graduated"]]
    assert passed and failed
    assert all(stages[(t["tenant"], t["job_id"])] == "shadow" for t in passed)
    assert all(stages[(t["tenant"], t["job_id"])] == "candidate" for t in failed)
    events = client.events(name, tenant="*")
    assert events[0]["reason"].endswith("waiting for an approval (policy fleet_promotion: shadow)")

    # Nothing is in production: every tenant is listed as not served, with the fix.
    assert fleet["counts"]["not_served"] == len(fleet["tenants"])
    fix = (f"approve version {glob['version']} of the global model (POST /models/{name}/"
           f"versions/{glob['version']}/approve with tenant '*')")
    skipped = next(t for t in fleet["not_served"] if t["reason"].startswith("too few"))
    assert skipped["reason"].endswith(
        f"not served: no production version for tenant {skipped['tenant']!r}, the global "
        f"model; to serve it, {fix}")
    answer = httpx.post(f"{server.url}/predict/{name}", timeout=60,
                        json={"tenant": skipped["tenant"], "rows": [ROW]})
    assert answer.status_code == 404
    assert answer.json()["message"].startswith(
        f"no production version of model {name!r}")

    client.approve(name, glob["version"], user="ops", comment="the fleet's fallback",
                   tenant="*")
    served = httpx.post(f"{server.url}/predict/{name}", timeout=60,
                        json={"tenant": skipped["tenant"], "rows": [ROW]})
    assert served.status_code == 200 and served.json()["served_by_tenant"] == "*"
    # A tenant whose own model waits in shadow is served by the global one meanwhile.
    waiting = passed[0]["tenant"]
    assert httpx.post(f"{server.url}/predict/{name}", timeout=60, json={
        "tenant": waiting, "rows": [ROW]}).json()["served_by_tenant"] == "*"


# The rules are the registry's Python over rows the shadow-policy test reads on both databases.
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_guard_rails_hold_for_a_fleets_tenants_and_fallbacks(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    request = fleet_request(fraud_request, segment_column="charge_country")
    name = request["metadata"]["model_name"]
    client.set_policy(name, actor="ops", auto_promote=False, min_holdout_rows=10**9)
    parent, fleet = run_fleet(client, request)
    assert all(v["stage"] == "candidate" for v in client.versions(name))
    tenants = [t for t in fleet["tenants"] if t["graduation"]]
    refused = "holdout rows, under the minimum of 1,000,000,000"
    assert len(fleet["fallbacks"]) > 1 and len(tenants) > 4
    for entry in fleet["fallbacks"]:  # nothing to beat: only the guard rails stop them
        assert not entry["graduation"]["graduated"]
        reason = entry["graduation"]["reason"]
        assert "refused by the guard rails: " in reason and refused in reason
    for entry in tenants:  # beaten by their fallback, or stopped by the guard rails
        assert not entry["graduation"]["graduated"]
        reason = entry["graduation"]["reason"]
        assert refused in reason or " is not > " in reason or "is undefined" in reason
    assert any(refused in t["graduation"]["reason"] for t in tenants)
    assert fleet["counts"]["not_served"] == len(fleet["tenants"])
    tenant = fleet["tenants"][0]
    segment = tenant["segment"]
    assert f"no production version for tenant {tenant['tenant']!r}, segment {segment!r}, the " \
           "global model; to serve it, approve version 1 of " in tenant["reason"]

    # Serving names every level it tried once the model has something in production.
    glob = client.versions(name, tenant="*")[0]
    other = next(v for v in client.versions(name) if v["tenant"].startswith("segment:")
                 and v["tenant"] != f"segment:{segment}")
    client.set_policy(name, actor="ops", auto_promote=False)
    client.approve(name, other["version"], user="ops", comment="one segment",
                   tenant=other["tenant"])
    answer = httpx.post(f"{server.url}/predict/{name}", timeout=60,
                        json={"tenant": tenant["tenant"], "rows": [ROW]})
    assert answer.status_code == 404
    assert answer.json()["message"].startswith(
        f"model {name!r} has no production version for tenant {tenant['tenant']!r}, then its "
        f"segment {segment!r} (tenant 'segment:{segment}'), then the global model (tenant '*')")
    assert glob["stage"] == "candidate"
