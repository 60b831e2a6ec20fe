"""The pipelines pages over HTTP: the list flags a failing pipeline, a pipeline's page shows each
run's steps in DAG order with their states and errors, and "Run now" starts a run through the
API's own function (with the page's CSRF token)."""

from __future__ import annotations

import re

import httpx
import pytest

from modelyard.client import Client
from tests.conftest import ServerProcess
from tests.pipelines.conftest import train_with


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_pipeline_pages_show_runs_steps_and_start_a_run(
        server: ServerProcess, client: Client, name: str) -> None:
    client.create_pipeline({"name": name, "steps": [
        {"name": "bad", "type": "train", "with": train_with(name, "Raises", max_depth=7)},
        {"name": "ship", "type": "deploy", "needs": ["bad"], "with": {"to": "shadow"}},
    ]})
    run = client.wait_pipeline_run(client.run_pipeline(name), timeout=120)
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        listing = browser.get("/ui/pipelines")
        assert listing.status_code == 200
        row = re.search(rf'<a href="/ui/pipelines/{name}">{name}</a>(.*?)</tr>', listing.text,
                        re.S)
        assert row and "failing" in row.group(1) and "bad → ship" in row.group(1)

        page = browser.get(f"/ui/pipelines/{name}")
        assert page.status_code == 200
        section = page.text[page.text.index(f'id="run-{run["run_id"]}"'):]
        assert section.index("<strong>bad</strong>") < section.index("<strong>ship</strong>")
        assert "step-failed" in section and "step-skipped" in section
        assert "max_depth=7" in section  # the failed step's reason
        assert "needs bad" in section
        assert browser.get("/ui/pipelines/no-such-pipeline").status_code == 404

        assert browser.post(f"/ui/pipelines/{name}/runs").status_code == 403  # no CSRF token
        token = browser.cookies["modelyard_csrf"]
        started = browser.post(f"/ui/pipelines/{name}/runs",
                               headers={"X-CSRF-Token": token, "HX-Request": "true"})
        assert started.status_code == 204
        new_run = started.headers["HX-Redirect"].rsplit("#run-", 1)[1]
        assert new_run != run["run_id"]
        assert client.wait_pipeline_run(new_run, timeout=120)["state"] == "failed"
