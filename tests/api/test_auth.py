"""One shared token (``MODELYARD_TOKEN``, a laptop's auth): an admin named ``token`` on every
route but /healthz and /readyz, the docs included; and a server with no token at all is open."""

from __future__ import annotations

import httpx
import pytest

from modelyard.client import Client
from modelyard.errors import Forbidden, Unauthorized
from tests.conftest import ServerProcess, example_request, with_workflow


def test_token_is_required_when_configured(token_env_server: ServerProcess) -> None:
    server = token_env_server
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    # Readiness too: a load balancer's health check carries no token.
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    # The docs' assets hold no data; the pages and the schema need the token.
    assert httpx.get(f"{server.url}/static/redoc/redoc.standalone.js").status_code == 200
    for page in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(f"{server.url}{page}").status_code == 401, page
        assert httpx.get(f"{server.url}{page}?token=s3cret").status_code == 200, page
    denied = httpx.get(f"{server.url}/jobs")
    assert denied.status_code == 401
    assert "bearer token" in denied.json()["message"]
    assert denied.headers["www-authenticate"] == 'Bearer realm="modelyard"'
    wrong = httpx.get(f"{server.url}/jobs", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    lower = httpx.get(f"{server.url}/whoami", headers={"Authorization": "bearer s3cret"})
    assert lower.json() == {"name": "token", "role": "admin", "authenticated": True}
    with Client(server.url, token="") as anonymous, pytest.raises(
        Unauthorized, match="MODELYARD_TOKEN"
    ):
        anonymous.train(example_request("tiny.parquet"))
    with Client(server.url, token="s3cret") as client:
        job_id = client.train(with_workflow(example_request("tiny.parquet"), "Tiny"))
        assert client.wait(job_id, timeout=60)["status"]["transition"]["job_state"] == (
            "succeeded")
        assert client.jobs()["jobs"][0]["submitted_by"] == "token"
        # One shared token is one identity: it cannot be the second pair of eyes on its
        # own job, unless the model's policy waives the rule.
        name = example_request()["metadata"]["model_name"]  # type: ignore[index]
        with pytest.raises(Forbidden, match="four eyes"):
            client.approve(name, 1, comment="mine")
        client.set_policy(name, auto_promote=False, four_eyes=False)
        assert client.approve(name, 1, comment="laptop")["stage"] == "production"
        assert client.events(name)[0]["actor"] == "token"


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_server_without_tokens_is_open_and_takes_names_from_the_body(
        server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/whoami").json() == {"name": "", "role": "admin",
                                              "authenticated": False}
        assert http.get("/openapi.json").status_code == 200
        # With no identities, audits record the name the body gives, so one is needed.
        nameless = http.post("/models/nomodel/rollback", json={})
        assert nameless.status_code == 422
        assert "actor: name who acts" in nameless.json()["message"]
        # Reaching a server without tokens is not enough to make its first one (and lock it).
        first = http.post("/tokens", json={"name": "mallory", "role": "admin"})
        assert first.status_code == 403 and "modelyard tokens create" in first.json()["message"]
        assert http.get("/tokens").json() == {"tokens": []}
