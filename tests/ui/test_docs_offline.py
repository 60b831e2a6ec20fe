"""/docs and /redoc draw in a browser that can reach nothing but the server: Swagger UI and
ReDoc and their fonts, scripts and schema are all served by Modelyard itself (the ``page``
fixture aborts, and fails the test on, any request to another host)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.conftest import UiServer


def test_swagger_ui_draws_the_api_offline(page: Page, ui_server: UiServer) -> None:
    page.goto(f"{ui_server.url}/docs?token={ui_server.token}")
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("Modelyard")
    train = page.locator(".opblock-summary-path", has_text="/train").first
    expect(train).to_be_visible()


def test_redoc_draws_the_api_offline(page: Page, ui_server: UiServer) -> None:
    page.goto(f"{ui_server.url}/redoc?token={ui_server.token}")
    expect(page.locator("redoc h1").first).to_contain_text("Modelyard")
    expect(page.get_by_text("/train", exact=False).first).to_be_attached()
