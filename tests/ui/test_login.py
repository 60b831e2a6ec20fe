"""Logging in and out in a real browser, the cookie it gets, and the CSRF guard on changes."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Cookie, Page, expect

from tests.ui.conftest import PageProblems, UiServer, login


def _session(context: BrowserContext) -> list[Cookie]:
    return [c for c in context.cookies() if c["name"] == "modelyard_session"]


def test_the_root_sends_a_stranger_to_the_login_page_and_then_to_the_jobs(
        page: Page, ui_server: UiServer) -> None:
    page.goto(f"{ui_server.url}/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Fjobs$"))
    expect(page.locator("h1")).to_have_text("Log in")
    page.locator("input[name=token]").fill(ui_server.token)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{ui_server.url}/ui/jobs")
    page.goto(f"{ui_server.url}/")
    expect(page).to_have_url(f"{ui_server.url}/ui/jobs")
    expect(page.locator("h1")).to_contain_text("Jobs")


def test_a_wrong_token_shows_why_and_sets_no_cookie(page: Page, problems: PageProblems,
                                                     ui_server: UiServer) -> None:
    problems.allow(r"status of 401")  # the login form's answer to a wrong token
    login(page, ui_server.url, token="not-a-token")
    expect(page.locator("#login-error")).to_contain_text("Unknown or revoked token")
    expect(page.locator("input[name=token]")).to_be_visible()
    assert _session(page.context) == []


def test_the_right_token_sets_an_httponly_strict_cookie_and_logout_clears_it(
        page: Page, ui_server: UiServer) -> None:
    login(page, ui_server.url, token=ui_server.seeded.tokens["vera"],
          next_path="/ui/jobs?state=failed")
    expect(page).to_have_url(f"{ui_server.url}/ui/jobs?state=failed")
    expect(page.locator("header .who")).to_contain_text("vera · viewer")
    (cookie,) = _session(page.context)
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/")
    assert page.evaluate("document.cookie").find("modelyard_session") == -1  # HttpOnly

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{ui_server.url}/ui/login")
    assert _session(page.context) == []
    page.goto(f"{ui_server.url}/ui/jobs")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))


def test_a_change_without_the_csrf_token_is_refused_even_with_the_cookie(
        logged_in: Page, problems: PageProblems, ui_server: UiServer) -> None:
    # The refusal, then whatever the route answers a cancel of a failed job (4xx, not 403).
    problems.allow(r"status of 4\d\d")
    job = ui_server.seeded.failed_job
    send = """async ([path, token]) => {
        const headers = token ? {"X-CSRF-Token": token} : {};
        const answer = await fetch(path, {method: "POST", headers});
        return [answer.status, await answer.text()];
    }"""
    status, body = logged_in.evaluate(send, [f"/ui/jobs/{job}/cancel", None])
    assert status == 403 and "without the page's CSRF token" in body
    # The page's own token (in the body's hx-headers, as htmx sends it) gets past the check.
    token = logged_in.evaluate(
        "JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    status, body = logged_in.evaluate(send, [f"/ui/jobs/{job}/cancel", token])
    assert status != 403, body
