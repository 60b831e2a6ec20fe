"""The web UI in a real browser: Debian's Chromium driven headless through Playwright.

Fixtures for every UI test:

``browser`` (session)
    One headless Chromium for the session: ``shutil.which("chromium")``, the Debian package that
    ``scripts/test.sh`` installs; Playwright never downloads a browser. Without it every UI test
    fails (CI must not skip them quietly).
``ui_server`` (session), a :class:`UiServer`
    A real ``modelyard server`` on SQLite with ``MODELYARD_TOKEN`` (:data:`TOKEN`, identity
    ``token``, an admin), seeded through the public API with what users look at (tests/ui/seed.py,
    about half a minute): ``ui_server.seeded`` is a :class:`~tests.ui.seed.Seeded` of ids and
    names: two versions of a binary model (v1 production approved with a comment, v2 a shadow
    with labelled traffic), a regression, a multi-class job, a job failed on bad data, a fleet
    with a failed tenant, and a candidate free to approve. Tests share it: change only
    ``seeded.approvable_model``, or what you create yourself.
``page`` (per test), a Playwright ``Page`` in a fresh context (no cookies: call :func:`login`
    first, or use ``logged_in``). It fails the test at teardown when the page logged a console
    error or threw, and when it asked for anything but a loopback address (the request is
    aborted: no CDN, no external asset); allow an expected console error with
    ``problems.allow(regex)``. It saves a full-page screenshot to
    ``$MODELYARD_TEST_ARTIFACTS/screenshots/<test id>.png`` (default ``test-artifacts/``).
``logged_in`` (per test)
    ``page``, logged in as the admin through the login form. As someone else:
    ``login(page, ui_server.url, token=ui_server.seeded.tokens["vera"])`` (a viewer; ``ann``
    trainer, ``bob`` approver).
``problems`` (per test), the :class:`PageProblems` that ``page`` records.

``page`` accepts any port of 127.0.0.1: a test that needs a server started with other flags
starts its own (``tests.conftest.start_server``) and browses it the same way.

A page test::

    def test_the_jobs_table_lists_the_jobs(logged_in: Page, ui_server: UiServer) -> None:
        logged_in.goto(f"{ui_server.url}/ui/jobs")
        expect(logged_in.locator("table")).to_contain_text(ui_server.seeded.regression_job)
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Route,
    expect,
    sync_playwright,
)

from modelyard.client import Client
from tests.conftest import ServerProcess, start_server
from tests.ui.seed import Seeded, seed

TOKEN = "ui-s3cret"
ROOT = Path(__file__).parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
LOOPBACK = frozenset({"127.0.0.1"})
# Waits for what a page shows: Playwright's 5 s is too short for ReDoc laying out the whole API
# on a busy 2-core machine running the suite beside the server and Chromium.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)
MAX_SCREENSHOT_PX = 4000


def artifacts_dir() -> Path:
    """Where test runs leave what a person looks at afterwards (screenshots)."""
    return Path(os.environ.get("MODELYARD_TEST_ARTIFACTS") or ROOT / "test-artifacts")


@dataclass
class UiServer:
    """The seeded server: its process, the admin token that logs in, and what it holds."""

    process: ServerProcess
    seeded: Seeded
    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.process.url

    def client(self, who: str | None = None) -> Client:
        """A client with ``who``'s token (a name of ``seeded.tokens``; None: the admin)."""
        return Client(self.url, token=self.seeded.tokens[who] if who else self.token,
                      timeout=60)


@dataclass
class PageProblems:
    """What a page did wrong: console errors, uncaught exceptions, requests off the server."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect console errors matching ``pattern`` (a 4xx page the test asks for logs
        "Failed to load resource: the server responded with a status of 4xx")."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location
            self.errors.append(f"console error: {message.text} (at {where.get('url')}:"
                               f"{where.get('lineNumber')})")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught exception: {error}")

    def on_request(self, route: Route, request: Request) -> None:
        if request.url.startswith(("http:", "https:", "ws:", "wss:")) and \
                urlsplit(request.url).hostname not in LOOPBACK:
            self.errors.append(f"request off the server (aborted): {request.method} "
                               f"{request.url}")
            route.abort("blockedbyclient")
        else:
            route.continue_()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whichever UI test runs first also waits for the seeding (about half a minute, more on a
    busy machine): the suite's 120 s per test would leave it too little."""
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.timeout(300))


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's headless Chromium for the whole session."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the UI tests drive Debian's Chromium, and `chromium` is not on PATH: "
                    "install it with `sudo apt-get install chromium` (scripts/test.sh does), "
                    "never `playwright install`")
    launched = playwright.chromium.launch(executable_path=chromium, headless=True,
                                          args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """The seeded server (see the module docstring and :class:`~tests.ui.seed.Seeded`)."""
    process = start_server(tmp_path_factory.mktemp("ui"), "sqlite", "--concurrency", "2",
                           env={"MODELYARD_TOKEN": TOKEN})
    try:
        with Client(process.url, token=TOKEN, timeout=60) as admin:
            seeded = seed(process, admin)
        yield UiServer(process, seeded)
    finally:
        process.stop()


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


def _screenshot_name(nodeid: str) -> str:
    return re.sub(r"[^\w.=-]+", "_", nodeid.removeprefix("tests/")).strip("_") + ".png"


@pytest.fixture
def page(browser: Browser, problems: PageProblems, request: pytest.FixtureRequest
         ) -> Iterator[Page]:
    """A fresh browser context's page that records what went wrong (see the module docstring)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    context.route("**/*", problems.on_request)
    opened = context.new_page()
    opened.on("console", problems.on_console)
    opened.on("pageerror", problems.on_page_error)
    yield opened
    try:
        folder = artifacts_dir() / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        if opened.url != "about:blank":
            # The whole page, down to a limit: ReDoc's is 60,000 px tall, seconds to encode.
            height = min(MAX_SCREENSHOT_PX, opened.evaluate(
                "document.documentElement.scrollHeight"))
            opened.screenshot(path=folder / _screenshot_name(request.node.nodeid),
                              full_page=True, clip={"x": 0, "y": 0, "width": 1280,
                                                    "height": height})
    finally:
        context.close()
    if unexpected := problems.unexpected():
        pytest.fail("the page went wrong:\n  " + "\n  ".join(unexpected))


def login(page: Page, server_url: str, token: str = TOKEN, next_path: str | None = None
          ) -> None:
    """Log in through the login form, as a person would; return on the page it leads to."""
    query = f"?next={next_path}" if next_path else ""
    page.goto(f"{server_url}/ui/login{query}")
    page.locator("input[name=token]").fill(token)
    with page.expect_navigation():
        page.locator("form button[type=submit], form input[type=submit]").first.click()


@pytest.fixture
def logged_in(page: Page, ui_server: UiServer) -> Page:
    """``page``, logged in as the admin (``MODELYARD_TOKEN``), on the jobs page."""
    login(page, ui_server.url)
    return page

