"""The Models, Fleet, Shadow report and Monitoring pages: in Chromium on the seeded server (what a
user sees, with no console error), and over plain HTTP for refusals (a 4xx page naming what was
wrong, a viewer's 403, the approval gate's own message)."""

from __future__ import annotations

import re
import time

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect

from modelyard.synthetic import example_request
from tests.conftest import with_workflow
from tests.ui.conftest import UiServer

CSRF = "csrf-for-tests"


def _drawn(page: Page, selector: str) -> None:
    """Wait until charts.js drew the chart (a canvas inside, ``data-drawn`` set)."""
    chart = page.locator(selector)
    expect(chart).to_have_attribute("data-drawn", "1")
    expect(chart.locator("canvas").first).to_be_visible()


def test_the_models_page_lists_each_model_and_its_versions_with_their_approval(
        logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    logged_in.goto(f"{ui_server.url}/ui/models")
    expect(logged_in.locator("#models")).to_contain_text(seeded.binary_model)
    logged_in.locator("#models a", has_text=seeded.binary_model).first.click()
    versions = logged_in.locator("table.versions[data-tenant='*'] tbody tr")
    expect(versions).to_have_count(2)
    expect(logged_in.locator("tr[data-version='1']")).to_have_attribute("data-stage",
                                                                         "production")
    expect(logged_in.locator("tr[data-version='2']")).to_have_attribute("data-stage", "shadow")
    expect(logged_in.locator("tr[data-version='1'] .approval")).to_contain_text(
        f"bob: {seeded.approval_comment}")
    expect(logged_in.locator("tr[data-version='1']")).to_contain_text("roc_auc")
    expect(logged_in.locator("#audit")).to_contain_text("try it on live traffic")
    expect(logged_in.locator("#policy")).to_contain_text("roc_auc")
    expect(logged_in.locator("a.compare-link")).to_have_attribute(
        "href", re.compile(r"^/ui/compare\?model=ui-fraud&versions=1,2&tenant=%2A$"))


def test_the_approve_button_moves_the_version_to_production_and_the_audit_log_shows_it(
        logged_in: Page, ui_server: UiServer) -> None:
    model = ui_server.seeded.approvable_model
    logged_in.on("dialog", lambda dialog: dialog.accept())
    logged_in.goto(f"{ui_server.url}/ui/models/{model}")
    row = logged_in.locator("tr[data-version='1']")
    expect(row).to_have_attribute("data-stage", "candidate")
    row.locator("input[name=comment]").fill("looked at the curves in the browser")
    row.locator("button.approve").click()
    expect(row).to_have_attribute("data-stage", "production")
    expect(row.locator(".approval")).to_contain_text("token: looked at the curves in the browser")
    first_event = logged_in.locator("#audit tbody tr").first
    expect(first_event).to_contain_text("approved: looked at the curves in the browser")
    expect(first_event).to_contain_text("token")
    expect(first_event).to_contain_text("production")
    with ui_server.client() as client:
        assert client.version(model, 1)["stage"] == "production"


def test_the_fleet_page_lists_tenants_with_the_failed_ones_reason(
        logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    logged_in.goto(f"{ui_server.url}/ui/fleets/{seeded.fleet_job}")
    expect(logged_in.locator("#fleet-counts")).to_contain_text("1 failed")
    failed = logged_in.locator(f"#tenants tr[data-tenant='{seeded.failing_tenant}']")
    expect(failed).to_have_attribute("data-state", "failed")
    expect(failed.locator(".failure")).to_contain_text(
        f"tenant {seeded.failing_tenant} fails on purpose")
    expect(failed).to_contain_text("global")  # the fallback that serves it
    logged_in.locator("input[name=failed]").check()
    logged_in.locator("form.filters button").click()
    expect(logged_in.locator("#tenants tbody tr")).to_have_count(1)
    expect(logged_in.locator("button", has_text="Retry failed tenants")).to_be_visible()


def test_the_shadow_report_draws_both_score_distributions_and_the_aucs(
        logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    logged_in.goto(f"{ui_server.url}/ui/models/{seeded.binary_model}/shadow")
    _drawn(logged_in, "#shadow-histogram-2-1")
    _drawn(logged_in, "#shadow-agreement-2-1")
    stats = logged_in.locator("table.shadow-stats[data-shadow='2']")
    expect(stats.locator(".auc-shadow")).to_have_text(re.compile(r"^0\.\d+$"))
    expect(stats.locator(".auc-production")).to_have_text(re.compile(r"^0\.\d+$"))
    expect(stats.locator(".agreement")).to_have_text(re.compile(r"^(0\.\d+|1)$"))


def test_the_monitoring_page_draws_drift_for_a_model_with_production_traffic(
        logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    logged_in.goto(f"{ui_server.url}/ui/models/{seeded.binary_model}/monitoring")
    _drawn(logged_in, "#drift")
    _drawn(logged_in, "#decay")
    expect(logged_in.locator("#no-traffic")).to_have_count(0)
    expect(logged_in.locator("#drift-table")).to_contain_text("charge_amount")
    expect(logged_in.locator("#staleness")).to_contain_text("Trained")


# -- over HTTP: refusals ---------------------------------------------------------------------


def _session(ui_server: UiServer, who: str | None = None) -> httpx.Client:
    """A client as a page's htmx requests are: the token, the CSRF cookie and header."""
    token = ui_server.seeded.tokens[who] if who else ui_server.token
    return httpx.Client(base_url=ui_server.url, timeout=60, headers={
        "authorization": f"Bearer {token}", "x-csrf-token": CSRF, "hx-request": "true"},
        cookies={"modelyard_csrf": CSRF})


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/ui/models/never-trained", 404, "never-trained"),
    ("/ui/models/never-trained/monitoring", 404, "never-trained"),
    ("/ui/models/ui-fraud/monitoring?days=400", 422, "days"),
    ("/ui/models/ui-fraud/shadow?threshold=2", 422, "threshold"),
    ("/ui/fleets/{fleet}?level=moon", 422, "level"),
    ("/ui/fleets/{regression}", 409, "not a fleet"),
    ("/ui/fleets/nosuchjob", 404, "nosuchjob"),
])
def test_a_bad_page_address_is_a_4xx_page_that_names_it(
        ui_server: UiServer, path: str, status: int, says: str) -> None:
    seeded = ui_server.seeded
    url = path.format(fleet=seeded.fleet_job, regression=seeded.regression_job)
    answer = httpx.get(ui_server.url + url, timeout=60,
                       headers={"authorization": f"Bearer {ui_server.token}"})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert says in answer.text


def test_a_viewer_cannot_press_approve_and_the_gate_refuses_with_its_reason(
        ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    model = seeded.multiclass_model  # v1 a candidate that no test approves
    with _session(ui_server, "vera") as viewer:
        shown = viewer.get(f"/ui/models/{model}")
        assert shown.status_code == 200 and "approvers only" in shown.text
        assert "/approve" not in shown.text  # no button a viewer could press
        refused = viewer.post(f"/ui/models/{model}/versions/1/approve",
                              data={"comment": "lgtm", "tenant": "*"})
        assert refused.status_code == 403
        assert "approver" in refused.json()["message"]
    with _session(ui_server) as admin:
        ungated = admin.post(f"/ui/models/{model}/versions/1/stage",
                             data={"stage": "production", "tenant": "*"})
        assert ungated.status_code == 409
        assert "promotion to production needs an approval" in ungated.json()["message"]
        no_comment = admin.post(f"/ui/models/{model}/versions/1/approve",
                                data={"comment": " ", "tenant": "*"})
        assert no_comment.status_code in (400, 422)
        assert "comment" in no_comment.json()["message"]
        bad_stage = admin.post(f"/ui/models/{model}/versions/1/stage",
                               data={"stage": "heaven", "tenant": "*"})
        assert bad_stage.status_code in (400, 422) and "stage" in bad_stage.json()["message"]
    with ui_server.client() as client:
        assert client.version(model, 1)["stage"] == "candidate"


def test_retry_on_a_job_that_is_no_fleet_is_refused_with_the_reason(ui_server: UiServer) -> None:
    # The seeded fleet is shared by every UI test: its retry is left to the button's presence.
    with _session(ui_server) as admin:
        answer = admin.post(f"/ui/fleets/{ui_server.seeded.regression_job}/retry")
    assert answer.status_code == 409
    assert "not a fleet" in answer.json()["message"]


def test_the_monitoring_page_lists_the_models_triggers_and_its_runs_steps(
        ui_server: UiServer) -> None:
    model = ui_server.seeded.multiclass_model  # no production version: nothing to monitor yet
    # The request file is read when the step runs: gone by then, the run fails at its first
    # step without training anything (the shared server's jobs stay as seeded).
    request_file = ui_server.process.home / "data" / "ui-bands-weekly.yaml"
    request = with_workflow(example_request("payments.parquet"), "sklearn")
    request["metadata"] = {**request["metadata"], "model_name": model}  # type: ignore[dict-item]
    request_file.write_text(yaml.safe_dump(request))
    spec = {"name": "ui-bands-weekly", "model": model, "steps": [
        {"name": "fit", "type": "train", "with": {"request_file": request_file.name}},
        {"name": "check", "type": "validate_model", "needs": ["fit"]}],
        "triggers": [{"type": "schedule", "cron": "0 3 * * 1"}]}
    with ui_server.client() as client:
        assert client._call("POST", "/pipelines", json=spec).status_code == 200
        request_file.unlink()
        run_id = client._call("POST", "/pipelines/ui-bands-weekly/runs", json={}).json()["run_id"]
        for _ in range(300):
            run = client._call("GET", f"/pipelines/runs/{run_id}").json()
            if run["state"] not in ("queued", "running"):
                break
            time.sleep(0.2)
    assert run["state"] == "failed", run
    answer = httpx.get(f"{ui_server.url}/ui/models/{model}/monitoring", timeout=60,
                       headers={"authorization": f"Bearer {ui_server.token}"})
    assert answer.status_code == 200, answer.text
    page = answer.text
    assert 'id="no-production"' in page and "no production version" in page
    triggers = page[page.index('id="triggers"'):page.index('id="runs"')]
    assert "ui-bands-weekly" in triggers and "schedule" in triggers
    runs = page[page.index('id="runs"'):]
    assert run_id[:8] in runs and "state-failed" in runs
    assert re.search(r'state-failed"[^>]*>fit<', runs), runs
    assert re.search(r'state-skipped"[^>]*>check<', runs), runs


def test_the_policy_form_replaces_the_policy_and_names_a_bad_field(ui_server: UiServer) -> None:
    model = ui_server.seeded.multiclass_model
    form = {"metric": "accuracy", "higher_is_better": "on", "min_improvement": "0.01",
            "require_same_holdout": "on", "four_eyes": "on", "min_holdout_rows": "10",
            "min_holdout_positives": "0", "max_score_psi": "", "max_latency_ms_per_row": "",
            "fleet_promotion": "auto"}
    with _session(ui_server) as admin:
        bad = admin.post(f"/ui/models/{model}/policy", data={**form, "min_holdout_rows": "many"})
        assert bad.status_code == 422
        assert bad.json()["message"].startswith("min_holdout_rows: ")
        saved = admin.post(f"/ui/models/{model}/policy", data=form)
        assert saved.status_code == 200, saved.text
        assert 'id="policy-section"' in saved.text and "min holdout rows 10" in saved.text
    with ui_server.client() as client:
        policy = client._call("GET", f"/models/{model}/policy").json()
    assert (policy["metric"], policy["min_holdout_rows"], policy["auto_promote"],
            policy["max_score_psi"], policy["updated_by"]) == ("accuracy", 10, False, None,
                                                                "token")
