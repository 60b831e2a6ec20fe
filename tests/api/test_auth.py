"""Optional bearer-token auth on every route but /healthz."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from modelyard.client import Client
from modelyard.errors import Unauthorized
from tests.conftest import example_request, start_server


def test_token_is_required_when_configured(tmp_path: Path) -> None:
    server = start_server(tmp_path, "sqlite", env={"MODELYARD_TOKEN": "s3cret"})
    try:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        # The API's documentation holds no data, and browsers fetch it without the header.
        for page in ("/openapi.json", "/docs", "/redoc", "/static/redoc/redoc.standalone.js"):
            assert httpx.get(f"{server.url}{page}").status_code == 200, page
        denied = httpx.get(f"{server.url}/jobs")
        assert denied.status_code == 401
        assert "bearer token" in denied.json()["message"]
        assert httpx.get(f"{server.url}/jobs",
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
        with Client(server.url, token="") as anonymous, pytest.raises(
            Unauthorized, match="MODELYARD_TOKEN"
        ):
            anonymous.train(example_request("tiny.parquet"))
        with Client(server.url, token="s3cret") as client:
            job_id = client.train(example_request("tiny.parquet"))
            assert client.wait(job_id, timeout=60)["status"]["transition"]["job_state"] == (
                "succeeded")
    finally:
        server.stop()
