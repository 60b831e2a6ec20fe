"""A fleet's plan streams its tenants: through the real server, with more worker slots than the
plan and the global model take, the first tenants train while the plan still writes the rest,
the fleet ends as it would have, and a plan that fails after queueing tenants cancels them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from modelyard.client import Client
from modelyard.synthetic import write_payments
from tests.conftest import ServerProcess, start_server, with_workflow
from tests.jobs.test_fleet import END, START, fleet_request, run_fleet


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def wide_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ServerProcess]:
    """A server with 3 worker slots, and a file whose plan takes long enough to stream."""
    proc = start_server(tmp_path_factory.mktemp(f"wide-{request.param}"), request.param,
                        "--concurrency", "3")
    write_payments(proc.home / "data" / "wide.parquet", rows=400_000, merchants=60)
    yield proc
    proc.stop()


@pytest.fixture
def wide_client(wide_server: ServerProcess) -> Iterator[Client]:
    with wide_server.client() as c:
        yield c


def _wide_request(fraud_request: dict[str, Any], **tenants: Any) -> dict[str, Any]:
    request = fleet_request(fraud_request, min_training_rows=4_000, **tenants)
    request["data"]["features"]["path"] = "wide.parquet"
    request["filters"] = []
    return request


def _qualifying(server: ServerProcess) -> tuple[list[str], pd.Series]:
    """Every tenant of wide.parquet in the plan's (text) order, and the qualifying ones' rows."""
    frame = pd.read_parquet(server.home / "data" / "wide.parquet")
    frame = frame[frame["created_at"] < END]
    train = frame[frame["created_at"] < START].groupby("merchant_id").size()
    rows = frame.groupby("merchant_id").size()
    return sorted(rows.index.astype(str)), rows[train[train >= 4_000].index]


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_tenants_start_before_the_plan_ends_and_the_fleet_ends_as_before(
        wide_server: ServerProcess, wide_client: Client, fraud_request: dict[str, Any]) -> None:
    request = _wide_request(fraud_request)
    parent, fleet = run_fleet(wide_client, request)
    _, qualifying = _qualifying(wide_server)
    assert len(qualifying) > 4
    plan = wide_client.status(parent)
    partition = next(s for s in plan["steps"] if s["name"] == "partition")
    plan_end = _at(partition["started_at"]) + dt.timedelta(seconds=partition["duration_s"])
    children = wide_client.jobs(parent_id=parent, limit=1000)["jobs"]
    tenants = [wide_client.status(c["job_id"]) for c in children if c["kind"] == "tenant"]
    first = min(_at(t["started_at"]) for t in tenants)
    assert first < plan_end, (first, plan_end)  # a free slot took a tenant the plan had written
    # Each qualifying tenant trained once, queued largest first, and the fleet ended as ever.
    assert sorted(t["tenant"] for t in tenants) == sorted(qualifying.index)
    queued = [c["tenant"] for c in sorted(children, key=lambda c: c["created_at"])
              if c["kind"] == "tenant"]
    sizes = [int(qualifying[t]) for t in queued]
    assert sizes == sorted(sizes, reverse=True)
    assert plan["transition"]["job_state"] == "succeeded"
    counts = fleet["counts"]
    assert counts["succeeded"] == len(qualifying) + 1  # and the global model
    assert counts["failed"] == counts["queued"] == counts["running"] == 0
    assert counts["total"] == len(fleet["tenants"]) + 1
    for entry in fleet["tenants"]:
        if entry["tenant"] in qualifying.index:
            assert entry["state"] == "succeeded" and entry["graduation"] is not None
            assert entry["graduation"]["fallback_level"] == "global"
            assert entry["level"] == ("tenant" if entry["graduation"]["graduated"] else "global")
        else:
            assert entry["state"] == "skipped" and entry["level"] == "global"
    log, _ = wide_client.logs(parent)
    assert "models queued while the plan runs" in log


def test_a_plan_failing_after_it_queued_tenants_cancels_them_and_fails_the_fleet(
        wide_server: ServerProcess, wide_client: Client, fraud_request: dict[str, Any]) -> None:
    request = with_workflow(_wide_request(fraud_request), "Sleeps", seconds=60)
    request["tenants"] = _wide_request(fraud_request)["tenants"]
    order, qualifying = _qualifying(wide_server)
    last = str(qualifying.sort_values(kind="stable").index[0])  # written in the last chunk
    parent = wide_client.train(request)
    # The smallest tenant's partition cannot be written: a folder is in its place.
    (wide_server.home / "artifacts" / "fleets" / parent / "tenants"
     / f"t{order.index(last):06d}.arrow").mkdir(parents=True)
    answer = wide_client.wait(parent, timeout=120, raise_on_failure=False)
    assert answer["status"]["transition"]["job_state"] == "failed"
    info = answer["exception_info"]
    assert (info["type"], info["step"]) == ("IsADirectoryError", "partition"), info
    children = wide_client.jobs(parent_id=parent, limit=1000)["jobs"]
    tenants = [c for c in children if c["kind"] == "tenant"]
    assert tenants and last not in {c["tenant"] for c in tenants}  # the first chunks' only
    for child in children:  # the global model and the streamed tenants, running or queued
        status = wide_client.wait(child["job_id"], timeout=60, raise_on_failure=False)["status"]
        assert status["transition"]["job_state"] == "cancelled", status
        assert status["transition"]["reason"].startswith(
            f"its fleet {parent} failed: IsADirectoryError in step partition")
