"""The README's screenshots, taken from the seeded server by the test run (never by hand): the
jobs page, and the compare page of the two versions of the binary model. They are saved to
``<artifacts>/readme/`` (see conftest.py ``artifacts_dir``); docs/images/ holds copies."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.conftest import UiServer, artifacts_dir


def _save(page: Page, name: str, *, full_page: bool = False) -> None:
    folder = artifacts_dir() / "readme"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / name, full_page=full_page)


def test_the_jobs_page_for_the_readme(logged_in: Page, ui_server: UiServer) -> None:
    seeded = ui_server.seeded
    logged_in.set_viewport_size({"width": 1440, "height": 600})  # the whole table, no margin
    logged_in.goto(f"{ui_server.url}/ui/jobs")
    table = logged_in.locator("table#jobs")
    for job in (seeded.binary_jobs[1], seeded.regression_job, seeded.failed_job,
                seeded.fleet_job):
        expect(table).to_contain_text(job)
    _save(logged_in, "jobs.png")


def test_the_compare_page_for_the_readme(logged_in: Page, ui_server: UiServer) -> None:
    first, second = ui_server.seeded.binary_jobs
    logged_in.set_viewport_size({"width": 1440, "height": 900})
    logged_in.goto(f"{ui_server.url}/ui/compare?jobs={first},{second}")
    expect(logged_in.locator("main")).to_contain_text(first)
    expect(logged_in.locator("main")).to_contain_text(second)
    chart = logged_in.locator('.chart[data-drawn="1"]').first
    expect(chart.locator("canvas")).to_be_visible()
    _save(logged_in, "compare.png", full_page=True)  # the overlaid curves are below the fold
