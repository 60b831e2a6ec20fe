"""Roles through the real server: each role allowed or refused (403 naming the role), no token
401, the token checked before the body, the docs behind a token, tokens stored hashed."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from modelyard.api.app import create_app
from modelyard.api.auth import RULES, needed_role
from modelyard.auth.roles import Role
from modelyard.auth.tables import TokenRow
from modelyard.errors import Unauthorized
from modelyard.settings import Settings
from modelyard.sql import make_engine, session_factory
from tests.api.conftest import WHO_HAS, TokenServer, create_tokens
from tests.cli.test_cli import modelyard
from tests.conftest import wait_until

LABELS = {"model_name": "nomodel"}  # neither labels nor path: 422 once past the role check
# (method, path, body, the role it needs, the status past the role check)
MATRIX: list[tuple[str, str, Any, Role, int]] = [
    ("GET", "/jobs", None, Role.viewer, 200),
    ("GET", "/models", None, Role.viewer, 200),
    ("GET", "/models/nomodel/policy", None, Role.viewer, 200),
    ("GET", "/serving/stats", None, Role.viewer, 200),
    ("GET", "/metrics", None, Role.viewer, 200),  # Prometheus scrapes with a viewer's token
    ("GET", "/whoami", None, Role.viewer, 200),
    ("POST", "/train", {}, Role.trainer, 422),
    ("POST", "/jobs/0123/cancel", None, Role.trainer, 404),
    ("POST", "/job/0123/cancel", None, Role.trainer, 404),
    ("POST", "/predict/nomodel", {"rows": [{"a": 1}]}, Role.trainer, 404),
    ("POST", "/labels", LABELS, Role.trainer, 422),
    ("POST", "/models/nomodel/versions/1/approve", {"comment": "ok"}, Role.approver, 404),
    ("POST", "/models/nomodel/versions/1/stage", {"stage": "shadow"}, Role.approver, 404),
    ("POST", "/models/nomodel/rollback", {}, Role.approver, 409),
    ("PUT", "/models/nomodel/policy", {"auto_promote": False}, Role.approver, 200),
    # Continuous training: a viewer reads runs, logs, triggers and monitoring, and neither
    # creates, runs, cancels nor reruns a pipeline.
    ("GET", "/pipelines", None, Role.viewer, 200),
    ("GET", "/pipelines/runs", None, Role.viewer, 200),
    ("GET", "/pipelines/runs/0123/logs", None, Role.viewer, 404),
    ("GET", "/pipelines/nopipe/triggers", None, Role.viewer, 404),
    ("GET", "/models/nomodel/monitoring", None, Role.viewer, 404),
    ("POST", "/pipelines", {}, Role.trainer, 422),
    ("POST", "/pipelines/nopipe/runs", {}, Role.trainer, 404),
    ("POST", "/pipelines/runs/0123/cancel", None, Role.trainer, 404),
    ("POST", "/pipelines/runs/0123/rerun", None, Role.trainer, 404),
    ("GET", "/tokens", None, Role.admin, 200),
    ("POST", "/tokens", {"name": "x", "role": "root"}, Role.admin, 422),
    ("DELETE", "/tokens/nobody", None, Role.admin, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "needed", "past"), MATRIX,
                         ids=[f"{m} {p}" for m, p, *_ in MATRIX])
def test_each_role_is_allowed_or_refused_naming_the_role(
        token_server: TokenServer, method: str, path: str, body: Any, needed: Role,
        past: int) -> None:
    with httpx.Client(base_url=token_server.url, timeout=30) as http:
        anonymous = http.request(method, path, json=body)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        for role, name in WHO_HAS.items():
            answer = http.request(method, path, json=body, headers=token_server.headers(name))
            if role.allows(needed):
                assert answer.status_code == past, (role, answer.text)
            else:
                assert answer.status_code == 403, (role, answer.text)
                assert answer.json()["error"] == "Forbidden"
                assert f"needs the {needed} role; {name!r} has {role}" in answer.json()["message"]


def test_the_scheme_is_case_insensitive_and_a_revoked_token_is_refused(
        token_server: TokenServer) -> None:
    with httpx.Client(base_url=token_server.url, timeout=30) as http:
        token = token_server.tokens["vera"]
        for scheme in ("bearer", "BEARER", "Bearer"):  # RFC 7235, 2.1: case-insensitive
            assert http.get("/whoami", headers={"Authorization": f"{scheme} {token}"}
                            ).json()["name"] == "vera"
        for header in (f"Basic {token}", token, "Bearer", f"Bearer {token}x"):
            assert http.get("/jobs", headers={"Authorization": header}).status_code == 401
        # Only the docs take ?token=: tokens stay out of other URLs and their logs.
        assert http.get("/jobs", params={"token": token}).status_code == 401

        admin = token_server.headers("ada")
        made = http.post("/tokens", json={"name": "temp", "role": "trainer"}, headers=admin)
        assert made.status_code == 201 and made.json()["created_by"] == "ada"
        temp = {"Authorization": f"Bearer {made.json()['token']}"}
        assert http.get("/whoami", headers=temp).json() == {
            "name": "temp", "role": "trainer", "authenticated": True}
        assert http.delete("/tokens/temp", headers=admin).json()["revoked_by"] == "ada"
        assert http.get("/whoami", headers=temp).status_code == 401  # at once on this server
        listed = http.get("/tokens", params={"revoked": True}, headers=admin).json()["tokens"]
        assert [t["name"] for t in listed if t["revoked_at"]] == ["temp"]
        assert all("token" not in t for t in listed)


def test_a_token_revoked_elsewhere_stops_working_within_seconds(
        token_server: TokenServer) -> None:
    tokens = create_tokens(token_server.server.db_url, {"eve": Role.viewer})
    eve = {"Authorization": f"Bearer {tokens['eve']}"}
    assert httpx.get(f"{token_server.url}/whoami", headers=eve).status_code == 200
    engine = make_engine(token_server.server.db_url)
    try:
        with session_factory(engine)() as session:  # what `modelyard tokens revoke` does
            from modelyard.auth.tokens import revoke_token

            revoke_token(session, "eve", revoked_by="tests")
    finally:
        engine.dispose()
    wait_until(lambda: httpx.get(f"{token_server.url}/whoami", headers=eve).status_code == 401,
               timeout=15)


def test_a_token_made_with_the_cli_works_at_once(token_server: TokenServer) -> None:
    made = modelyard("tokens", "create", "carl", "--role", "trainer",
                     "--db", token_server.server.db_url)
    assert made.returncode == 0, made.stdout + made.stderr
    carl = {"Authorization": f"Bearer {made.stdout.strip()}"}
    assert httpx.get(f"{token_server.url}/whoami", headers=carl).json()["name"] == "carl"


def _send_head(url: str, path: str, headers: dict[str, str], declared: int
               ) -> tuple[int, dict[str, str], float]:
    """Send a request's head and 1 KiB of a ``declared``-byte body, read the answer (status,
    headers, seconds it took), and wait for the server to close the connection (a timeout
    fails the test: the rest of the body is never sent)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}",
                 "Content-Type: application/json", f"Content-Length: {declared}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        started = time.monotonic()
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"[" + b"0," * 512)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection without answering"
            data += chunk
        took = time.monotonic() - started
        head = data.split(b"\r\n\r\n")[0].decode()
        status = int(head.split()[1])
        answer = dict(line.lower().split(": ", 1) for line in head.split("\r\n")[1:])
        while sock.recv(65536) != b"":
            pass
    return status, answer, took


def test_the_token_and_role_are_checked_before_the_body_is_read(
        token_server: TokenServer) -> None:
    declared = 15 * 2**20  # under the body limit (16 MiB): only auth can refuse it
    status, headers, took = _send_head(token_server.url, "/train", {}, declared)
    assert status == 401 and headers["connection"] == "close"
    assert took < 10  # answered with 1 KiB of the 15 MiB sent: it did not wait for the body
    status, headers, took = _send_head(token_server.url, "/train",
                                       token_server.headers("vera"), declared)
    assert status == 403 and headers["connection"] == "close"
    # The server still answers on a fresh connection.
    assert httpx.get(f"{token_server.url}/healthz").status_code == 200


def test_the_docs_need_a_token_which_the_pages_hand_on(token_server: TokenServer) -> None:
    token = token_server.tokens["vera"]
    with httpx.Client(base_url=token_server.url, timeout=30) as http:
        for page in ("/docs", "/redoc", "/openapi.json"):
            refused = http.get(page)
            assert refused.status_code == 401, page
            assert "?token=" in refused.json()["message"]
            assert http.get(page, params={"token": token}).status_code == 200, page
        assert http.get("/openapi.json", headers=token_server.headers("vera")).status_code == 200
        assert f"/openapi.json?token={token}" in http.get("/docs", params={"token": token}).text
        assert f"/openapi.json?token={token}" in http.get("/redoc", params={"token": token}).text
        # The pages' scripts and styles hold no data: a browser loads them without a token.
        assert http.get("/static/redoc/redoc.standalone.js").status_code == 200
        assert http.get("/healthz").status_code == 200


def test_openapi_declares_the_bearer_scheme_and_each_operation_s_role(
        token_server: TokenServer) -> None:
    schema = httpx.get(f"{token_server.url}/openapi.json",
                       headers=token_server.headers("vera")).json()
    bearer = schema["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    paths = schema["paths"]
    assert paths["/healthz"]["get"]["security"] == paths["/readyz"]["get"]["security"] == []
    assert paths["/train"]["post"]["security"] == [{"bearer": ["trainer"]}]
    assert paths["/jobs"]["get"]["security"] == [{"bearer": ["viewer"]}]
    approve = paths["/models/{model_name}/versions/{version}/approve"]["post"]
    assert approve["security"] == [{"bearer": ["approver"]}]
    assert "four eyes" in approve["responses"]["403"]["description"]
    assert paths["/tokens"]["post"]["security"] == [{"bearer": ["admin"]}]
    for path, item in paths.items():
        for method, operation in item.items():
            if path not in ("/healthz", "/readyz"):
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_every_route_has_a_rule(tmp_path: Path) -> None:
    """A route no rule names needs an admin (closed by default); each one should be named."""
    app = create_app(Settings.load(home=tmp_path))
    prefixes = [prefix for prefix, _, _ in RULES]
    for path in app.openapi()["paths"]:
        if path not in ("/healthz", "/readyz"):
            assert any(path.startswith(p) for p in prefixes), f"no rule names {path}"
    assert needed_role("POST", "/somewhere/new") is Role.admin
    assert needed_role("GET", "/models/x/versions") is Role.viewer
    assert needed_role("POST", "/models/x/rollback") is Role.approver


def test_tokens_are_stored_hashed(token_server: TokenServer) -> None:
    engine = make_engine(token_server.server.db_url)
    try:
        with session_factory(engine)() as session:
            rows = {r.name: r for r in session.scalars(select(TokenRow))}
    finally:
        engine.dispose()
    for name, token in token_server.tokens.items():
        assert rows[name].token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in {str(v) for v in vars(rows[name]).values()}
    if token_server.server.db_url.startswith("sqlite"):
        # Nowhere in the database's files either (the WAL holds the latest writes).
        files = list(token_server.server.home.glob("modelyard.db*"))
        raw = b"".join(path.read_bytes() for path in files)
        assert raw and not any(t.encode() in raw for t in token_server.tokens.values())


def test_a_client_without_a_token_gets_unauthorized(token_server: TokenServer) -> None:
    with token_server.client(None) as anonymous, pytest.raises(Unauthorized,
                                                                  match="modelyard tokens"):
        anonymous.jobs()
