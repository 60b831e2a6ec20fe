"""The jobs, job and compare pages in a real browser, on the seeded server (conftest.py): what
a user sees, with the page's charts drawn and no console error."""

from __future__ import annotations

import json
import re
import uuid

from playwright.sync_api import Page, expect

from modelyard.synthetic import example_request
from tests.conftest import with_workflow
from tests.ui.conftest import UiServer

DRAWN = '[data-drawn="1"] canvas'


def test_the_jobs_table_lists_the_jobs_and_filtering_by_state_narrows_it(
        logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    logged_in.goto(f"{ui_server.url}/ui/jobs")
    rows = logged_in.locator("#job-rows tr[data-job]")
    for job_id in (seeded.regression_job, seeded.failed_job, *seeded.binary_jobs):
        expect(rows.filter(has=logged_in.locator(f'a[href="/ui/jobs/{job_id}"]'))
               ).to_have_count(1)
    binary = rows.filter(has=logged_in.locator(f'a[href="/ui/jobs/{seeded.binary_jobs[0]}"]'))
    expect(binary).to_contain_text("roc_auc")
    expect(binary).to_contain_text("ui-tests")

    logged_in.locator("select[name=state]").select_option("failed")
    with logged_in.expect_navigation():
        logged_in.get_by_role("button", name="Filter").click()
    assert "state=failed" in logged_in.url
    expect(rows.filter(has=logged_in.locator(f'a[href="/ui/jobs/{seeded.failed_job}"]'))
           ).to_have_count(1)
    expect(rows.filter(has=logged_in.locator(f'a[href="/ui/jobs/{seeded.regression_job}"]'))
           ).to_have_count(0)
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.state)")) == {"failed"}


def _sleeping_job(ui_server: UiServer, project: str) -> str:
    request = with_workflow(example_request("tiny.parquet"), "Sleeps", seconds=120)
    request["metadata"] = {**request["metadata"], "model_name": "ui-sleeps",  # type: ignore[dict-item]
                           "project": project}
    with ui_server.client("ann") as ann:
        return ann.train(request)


def test_running_jobs_update_live_and_the_polling_stops_when_they_end(
        logged_in: Page, ui_server: UiServer) -> None:
    project = f"live-{uuid.uuid4().hex[:8]}"
    watched, listed = _sleeping_job(ui_server, project), _sleeping_job(ui_server, project)
    with ui_server.client() as admin:
        logged_in.goto(f"{ui_server.url}/ui/jobs/{watched}")
        expect(logged_in.locator("#job-log")).to_have_attribute("data-live", "1")
        admin.cancel(watched)
        # The log's poll sees the job ended and reloads the page, which shows how.
        expect(logged_in.locator("#failure")).to_contain_text("cancelled through the API",
                                                              timeout=20_000)
        expect(logged_in.locator("#job-log")).to_have_attribute("data-live", "0")

        logged_in.goto(f"{ui_server.url}/ui/jobs?project={project}")
        body = logged_in.locator("#job-rows")
        expect(body).to_have_attribute("data-live", "1")
        admin.cancel(listed)
    row = logged_in.locator(f'#job-rows tr[data-job="{listed}"]')
    expect(row).to_have_attribute("data-state", "cancelled", timeout=20_000)
    expect(body).to_have_attribute("data-live", "0")
    expect(body).not_to_have_attribute("hx-trigger", re.compile("."))


def test_the_job_page_draws_its_roc_curve_and_shows_what_went_in(
        logged_in: Page, ui_server: UiServer) -> None:
    job_id = ui_server.seeded.binary_jobs[0]
    logged_in.goto(f"{ui_server.url}/ui/jobs/{job_id}")
    expect(logged_in.locator(f"#roc{DRAWN}")).to_be_visible()
    for chart in ("pr", "calibration", "scores"):
        expect(logged_in.locator(f"#{chart}{DRAWN}")).to_be_visible()
    expect(logged_in.locator("#transitions")).to_contain_text("the workflow trained")
    expect(logged_in.locator("#timeline .step")).to_have_count(7)
    expect(logged_in.locator("#request-yaml")).to_contain_text("model_name: ui-fraud")
    expect(logged_in.locator("#data-digest")).to_contain_text("sha256:")
    expect(logged_in.locator("#packages")).to_contain_text("scikit-learn")
    expect(logged_in.locator("#job-log")).to_contain_text("job succeeded")
    expect(logged_in.locator("a.version-link")).to_have_attribute("href", "/ui/models/ui-fraud")


def test_regression_and_multiclass_jobs_get_their_own_plots(
        logged_in: Page, ui_server: UiServer) -> None:
    logged_in.goto(f"{ui_server.url}/ui/jobs/{ui_server.seeded.regression_job}")
    expect(logged_in.locator(f"#residuals{DRAWN}")).to_be_visible()
    expect(logged_in.locator(f"#predicted{DRAWN}")).to_be_visible()
    expect(logged_in.locator("#roc")).to_have_count(0)
    logged_in.goto(f"{ui_server.url}/ui/jobs/{ui_server.seeded.multiclass_job}")
    matrix = logged_in.locator("#confusion table.matrix")
    expect(matrix).to_contain_text("actual \\ predicted")
    for band in ("low", "mid", "high"):
        expect(matrix.locator("th", has_text=band)).to_have_count(2)


def test_a_failed_job_shows_its_reason(logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    logged_in.goto(f"{ui_server.url}/ui/jobs/{seeded.failed_job}")
    failure = logged_in.locator("#failure")
    expect(failure).to_contain_text(seeded.failed_reason)
    expect(failure).to_contain_text("DataError")
    expect(logged_in.locator("#no-plots")).to_contain_text("ended failed")


def test_a_fleet_job_links_to_its_fleet_page(logged_in: Page, ui_server: UiServer) -> None:
    fleet = ui_server.seeded.fleet_job
    logged_in.goto(f"{ui_server.url}/ui/jobs/{fleet}")
    expect(logged_in.locator("#fleet-link")).to_have_attribute("href", f"/ui/fleets/{fleet}")
    expect(logged_in.locator("#no-plots")).to_contain_text("is a fleet: its models are its "
                                                           "children's")


def test_comparing_two_ticked_jobs_shows_metrics_curves_and_diffs(
        logged_in: Page, ui_server: UiServer) -> None:
    first, second = ui_server.seeded.binary_jobs
    logged_in.goto(f"{ui_server.url}/ui/jobs?search=ui-fraud")
    for job_id in (first, second):
        logged_in.locator(f'input[name=jobs][value="{job_id}"]').check()
    with logged_in.expect_navigation():
        logged_in.get_by_role("button", name="Compare selected").click()
    assert "/ui/compare?" in logged_in.url
    metrics = logged_in.locator("#compare-metrics")
    expect(metrics.locator("thead")).to_contain_text("v1")
    expect(metrics.locator("thead")).to_contain_text("v2")
    expect(metrics.locator("tr", has_text="roc_auc").locator("td")).to_have_count(2)
    expect(logged_in.locator("#same-rows")).to_contain_text("on the challenger's")
    roc = logged_in.locator(f"#roc{DRAWN}")
    expect(roc).to_be_visible()
    spec = json.loads(logged_in.locator("#roc").get_attribute("data-chart") or "{}")
    assert [s["label"].split(" ")[0] for s in spec["series"]] == ["v1", "v2"], "oldest first"
    expect(logged_in.locator(f"#pr{DRAWN}")).to_be_visible()
    diff = logged_in.locator("#request-diff")
    expect(diff.locator("span.delete")).to_contain_text("max_iter: 10")
    expect(diff.locator("span.add")).to_contain_text("max_iter: 40")
    expect(logged_in.locator("#compare-parameters")).to_contain_text(
        "train.custom_params.max_iter")


def test_versions_compare_the_same_way(logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    logged_in.goto(f"{ui_server.url}/ui/compare?model={seeded.binary_model}&versions=1,2")
    expect(logged_in.locator("h1")).to_contain_text(f"versions of {seeded.binary_model}")
    expect(logged_in.locator("#same-rows")).to_contain_text("Version 2 (challenger)")
    expect(logged_in.locator(f"#roc{DRAWN}")).to_be_visible()
