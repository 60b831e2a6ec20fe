"""Concurrent stage changes through the real server, on SQLite and PostgreSQL: of ten requests
that move one version at the same moment, one wins and nine are refused, and the audit trail
holds one event."""

from __future__ import annotations

import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import func, select

from modelyard.client import Client
from modelyard.registry.tables import ApprovalRow, VersionRow
from modelyard.sql import make_engine
from tests.conftest import ServerProcess
from tests.registry.conftest import train_version

N = 10


def _at_once(server: ServerProcess, path: str, bodies: list[dict[str, Any]]
             ) -> list[httpx.Response]:
    """POST each body to ``path`` from its own thread and connection, all released together."""
    start = threading.Barrier(len(bodies))

    def post(body: dict[str, Any]) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            http.get("/healthz")  # connected before the barrier, so the posts start together
            start.wait()
            return http.post(path, json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def _approvals(server: ServerProcess, model_name: str) -> int:
    """Approval rows of the model's versions, read from the server's database."""
    engine = make_engine(server.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(
                select(func.count()).select_from(ApprovalRow).join(
                    VersionRow, VersionRow.id == ApprovalRow.version_id)
                .where(VersionRow.model_name == model_name)) or 0)
    finally:
        engine.dispose()


def test_concurrent_approvals_promote_once(server: ServerProcess, client: Client,
                                           model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    train_version(client, model_request)
    train_version(client, model_request, max_iter=30)
    quoted = urllib.parse.quote(name, safe="")

    answers = _at_once(server, f"/models/{quoted}/versions/1/approve",
                       [{"user": f"approver-{i}", "comment": "ship it"} for i in range(N)])
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * (N - 1), [a.text for a in answers]
    assert {a.json()["error"] for a in answers if a.status_code == 409} == {"Conflict"}
    to_production = [e for e in client.events(name) if e["to_stage"] == "production"]
    assert len(to_production) == 1
    assert _approvals(server, name) == 1  # the refused ones' approvals were rolled back
    assert client.version(name, 1)["stage"] == "production"

    answers = _at_once(server, f"/models/{quoted}/versions/2/stage",
                       [{"stage": "shadow", "actor": f"ops-{i}"} for i in range(N)])
    assert sorted(a.status_code for a in answers) == [200] + [409] * (N - 1), [
        a.text for a in answers]
    to_shadow = [e for e in client.events(name) if e["to_stage"] == "shadow"]
    assert len(to_shadow) == 1
    assert {v["version"]: v["stage"] for v in client.versions(name)} == {
        1: "production", 2: "shadow"}
