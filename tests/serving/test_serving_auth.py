"""Serving's routes ask for the bearer token like every other route: the app that mounts them
adds the check (serving imports nothing of the API)."""

from __future__ import annotations

import httpx

from tests.conftest import ServerProcess

CALLS = [
    ("POST", "/predict/fraud", {"rows": [{"charge_amount": 1.0}]}),
    ("POST", "/labels", {"model_name": "fraud", "labels": [{"request_id": "r", "label": 1}]}),
    ("GET", "/models/fraud/shadow-report", None),
    ("GET", "/serving/stats", None),
]


def test_serving_routes_need_the_token_when_one_is_configured(token_env_server: ServerProcess
                                                             ) -> None:
    with httpx.Client(base_url=token_env_server.url, timeout=30) as http:
        for method, path, body in CALLS:
            denied = http.request(method, path, json=body)
            assert denied.status_code == 401, (path, denied.text)
            assert "bearer token" in denied.json()["message"]
            wrong = http.request(method, path, json=body,
                                 headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 401, path
        allowed = http.get("/serving/stats", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200 and "routes" in allowed.json()
        unknown = http.post("/predict/fraud", json=CALLS[0][2],
                            headers={"Authorization": "Bearer s3cret"})
        assert unknown.status_code == 404  # past the check: no such model
