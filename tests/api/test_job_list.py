"""``GET /jobs`` filters, search and paging through the real server, on SQLite and PostgreSQL
(the search's case-insensitive LIKE differs between them; jobs on a corrupt file fail at once,
so they cost no training)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx

from modelyard.client import Client
from tests.conftest import ServerProcess


def _listed(server: ServerProcess, **params: Any) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/jobs", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_jobs_are_filtered_searched_and_paged(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = []
    for name in ("alpha", "beta", "gamma"):
        request = copy.deepcopy(fraud_request)
        request["metadata"].update(model_name=f"{name}-{tag}", project=f"list-{tag}")
        request["data"]["features"]["path"] = "corrupt.parquet"
        ids.append(client.train(request))
    for job_id in ids:
        client.wait(job_id, timeout=60, raise_on_failure=False)

    assert _listed(server, search=tag)["total"] == 3
    found = _listed(server, search=f"ALPHA-{tag}")["jobs"]
    assert [j["job_id"] for j in found] == [ids[0]]
    assert [j["job_id"] for j in _listed(server, search=ids[1][:10])["jobs"]] == [ids[1]]
    assert _listed(server, search="%")["total"] == 0, "a wildcard is a plain character"
    failed = _listed(server, project=f"list-{tag}", state="failed")
    assert failed["total"] == 3 and _listed(server, project=f"list-{tag}",
                                            state="succeeded")["total"] == 0
    first, second = (_listed(server, search=tag, limit=2, offset=o) for o in (0, 2))
    assert [j["job_id"] for j in first["jobs"] + second["jobs"]] == ids[::-1]
    row = failed["jobs"][0]
    assert row["main_metric"] is None and row["duration_s"] is not None and row["error"]
