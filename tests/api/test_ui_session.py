"""The web UI's session over HTTP: login trades a token for an HttpOnly cookie that works on
``/ui`` pages only, every change needs the CSRF token, and errors come back as pages."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerProcess


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


@pytest.fixture
def browser(token_env_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=token_env_server.url, follow_redirects=False, timeout=30) as c:
        yield c


def test_a_browser_without_a_session_is_sent_to_the_login_page(browser: httpx.Client) -> None:
    assert browser.get("/").headers["location"] == "/ui/jobs"
    answer = browser.get("/ui/jobs?state=failed")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Fjobs%3Fstate%3Dfailed"
    assert browser.get("/ui/static/htmx/htmx.min.js").status_code == 200  # assets need no token


def test_login_sets_an_httponly_strict_cookie_that_only_the_ui_accepts(
        browser: httpx.Client) -> None:
    token = _csrf(browser.get("/ui/login"))
    wrong = browser.post("/ui/login", data={"csrf_token": token, "token": "nope",
                                            "next": "/ui/jobs"})
    assert wrong.status_code == 401
    assert "Unknown or revoked token" in wrong.text
    assert "modelyard_session" not in wrong.headers.get("set-cookie", "")

    right = browser.post("/ui/login", data={"csrf_token": token, "token": "s3cret",
                                            "next": "https://evil.example/ui/jobs"})
    assert right.status_code == 303
    assert right.headers["location"] == "/ui/jobs"  # never another site
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("modelyard_session=s3cret;")
    for flag in ("HttpOnly", "Path=/;", "SameSite=strict"):
        assert flag in cookie
    page = browser.get("/ui/jobs")
    assert page.status_code == 200
    assert "<h1>Jobs" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # The cookie is no key to the JSON API: that keeps to the bearer header.
    assert httpx.get(f"{browser.base_url}/jobs", headers={"cookie": "modelyard_session=s3cret"}
                     ).status_code == 401
    assert browser.get("/docs").status_code == 200  # the nav's API docs link works logged in


def test_a_change_without_the_csrf_token_is_refused(browser: httpx.Client) -> None:
    token = _csrf(browser.get("/ui/login"))
    browser.post("/ui/login", data={"csrf_token": token, "token": "s3cret"})
    refused = browser.post("/ui/jobs/abc/cancel")
    assert refused.status_code == 403
    assert "CSRF token" in refused.json()["message"]
    forged = httpx.post(f"{browser.base_url}/ui/login", headers={"cookie": "modelyard_csrf=a"},
                        data={"csrf_token": "b", "token": "s3cret"})
    assert forged.status_code == 403
    logout = browser.post("/ui/logout", data={"csrf_token": token})
    assert logout.status_code == 303
    assert 'modelyard_session=""' in logout.headers["set-cookie"]


def test_a_bad_query_parameter_is_a_page_naming_it(browser: httpx.Client) -> None:
    token = _csrf(browser.get("/ui/login"))
    browser.post("/ui/login", data={"csrf_token": token, "token": "s3cret"})
    page = browser.get("/ui/jobs", params={"state": "bogus"})
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert "query.state" in page.text
