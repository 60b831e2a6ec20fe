"""The Experiments pages in Chromium on the seeded server: the list (filtered by model and
state), the scorecard with its chart, and Stop through the same function as the API's."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.ui.conftest import UiServer
from tests.ui.seed import EXPERIMENT_REQUESTS, HYPOTHESIS

CSRF = "csrf-for-tests"


def test_a_viewer_sees_no_stop_button_and_cannot_press_it(ui_server: UiServer) -> None:
    seeded = ui_server.seeded  # runs before the stop below: the experiment still runs
    with httpx.Client(base_url=ui_server.url, timeout=60, cookies={"modelyard_csrf": CSRF},
                      headers={"authorization": f"Bearer {seeded.tokens['vera']}",
                               "x-csrf-token": CSRF, "hx-request": "true"}) as viewer:
        shown = viewer.get(f"/ui/experiments/{seeded.experiment_id}")
        assert shown.status_code == 200 and "running" in shown.text
        assert "/stop" not in shown.text and "/ship" not in shown.text
        refused = viewer.post(f"/ui/experiments/{seeded.experiment_id}/stop",
                              data={"reason": "no"})
    assert refused.status_code == 403 and "approver" in refused.json()["message"]


def test_the_experiments_page_lists_it_and_its_scorecard_draws_and_stops(
        logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    eid, model = seeded.experiment_id, seeded.experiment_model
    logged_in.on("dialog", lambda dialog: dialog.accept())
    logged_in.goto(f"{ui_server.url}/ui/models/{model}")
    logged_in.get_by_role("link", name="Experiments").last.click()
    table = logged_in.locator("#experiments")
    expect(table).to_contain_text(HYPOTHESIS)  # escaped: the markup shows as text
    expect(table.locator("tbody tr")).to_have_count(1)
    logged_in.select_option("select[name=state]", "shipped")
    logged_in.get_by_role("button", name="Show").click()
    expect(table).to_contain_text("No experiments match")

    logged_in.goto(f"{ui_server.url}/ui/experiments?state=running&model={model}")
    table.locator(f"a[href='/ui/experiments/{eid}']").click()
    arms = logged_in.locator("#arms tbody tr")
    expect(arms).to_have_count(2)
    expect(logged_in.locator("#method")).to_contain_text("always-valid sequential test")
    expect(logged_in.locator("#recommendation")).to_contain_text("keep running")
    expect(logged_in.locator("#guardrails")).to_contain_text("error_rate")
    chart = logged_in.locator("#served-chart")
    expect(chart).to_have_attribute("data-drawn", "1")
    expect(chart.locator("canvas").first).to_be_visible()
    with ui_server.client() as client:
        card = client.experiment(eid)
    assert sum(a["requests"] for a in card["arms"]) == EXPERIMENT_REQUESTS
    expect(arms.first).to_contain_text(f"{card['arms'][0]['requests']}")

    logged_in.locator("#stop input[name=reason]").fill("enough seen in the browser")
    logged_in.locator("#stop button").click()
    expect(logged_in.locator("h1 .badge")).to_have_text("stopped")
    expect(logged_in.locator("#ended")).to_contain_text("enough seen in the browser")
    with ui_server.client() as client:
        assert client.experiment(eid)["state"] == "stopped"
        (event,) = [e for e in client.events(model) if eid in e["reason"]]
    assert (event["actor"], event["reason"]) == (
        "token", f"experiment {eid} stopped: enough seen in the browser")
