"""The ``page`` fixture's guards catch what they promise: a console error, an uncaught exception
and a request to another host (aborted), so a page test cannot pass over them."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.ui.conftest import PageProblems, UiServer


def _until_recorded(page: Page, problems: PageProblems, count: int) -> None:
    """Let Playwright deliver the page's events (the sync API does so only inside its calls)."""
    for _ in range(100):
        if len(problems.errors) >= count:
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"expected {count} problems, recorded {problems.errors}")


def test_console_errors_exceptions_and_other_hosts_are_caught(
        page: Page, problems: PageProblems, ui_server: UiServer) -> None:
    page.goto(f"{ui_server.url}/healthz")
    answer = page.evaluate("""() => {
        console.error('drawn wrong');
        setTimeout(() => { throw new Error('thrown late'); }, 0);
        return fetch('https://cdn.example.com/lib.js').then(() => 'fetched', () => 'refused');
    }""")
    assert answer == "refused"
    _until_recorded(page, problems, 3)
    found = "\n".join(problems.errors)
    assert "console error: drawn wrong" in found
    assert any(e.startswith("uncaught exception: ") and "thrown late" in e
               for e in problems.errors), found
    assert "request off the server (aborted): GET https://cdn.example.com/lib.js" in found
    problems.allow(".")  # seen: the teardown would fail the test on them


def test_an_allowed_console_error_is_the_only_one_forgiven(page: Page, problems: PageProblems,
                                                           ui_server: UiServer) -> None:
    page.goto(f"{ui_server.url}/healthz")
    problems.allow(r"status of 404")
    page.evaluate("() => { console.error('the server responded with a status of 404'); "
                  "console.error('something else'); }")
    _until_recorded(page, problems, 2)
    assert [e.split(" (at ")[0] for e in problems.unexpected()] == [
        "console error: something else"]
    problems.allow("something else")
