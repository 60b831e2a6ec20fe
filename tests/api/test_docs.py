"""/docs and /redoc load everything from the server itself, so they work with no internet."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.conftest import ServerProcess

PAGES = ["/docs", "/redoc"]
# The pages and their assets are static files of the server: SQLite alone.
pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


class _Urls(HTMLParser):
    """The URLs a page makes the browser fetch: src, href and ReDoc's spec-url attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "spec-url"} and value:
                self.urls.append((tag, value))


def page_urls(html: str) -> list[tuple[str, str]]:
    parser = _Urls()
    parser.feed(html)
    # Swagger UI gets its spec URL in a script: SwaggerUIBundle({url: '/openapi.json', ...}).
    parser.urls += [("script", u) for u in re.findall(r"\burl: '([^']*)'", html)]
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
def test_docs_pages_load_only_assets_of_the_server_itself(server: ServerProcess, page: str
                                                          ) -> None:
    answer = httpx.get(f"{server.url}{page}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    html = answer.text

    absolute = re.findall(r"(?:https?:)?//[\w.-]+", html)
    assert not absolute, f"{page} points at other hosts: {absolute}"
    urls = page_urls(html)
    scripts = [url for tag, url in urls if tag == "script"]
    assert any(url.endswith(".js") for url in scripts), f"{page} loads no script: {urls}"
    for tag, url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), (
            f"{page}: {tag} URL {url!r} is not a path on this server")
        asset = httpx.get(urljoin(server.url, url))
        assert asset.status_code == 200, f"{page}: {url} answered {asset.status_code}"
        assert len(asset.content) > 500, f"{page}: {url} is only {len(asset.content)} bytes"
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"]
            assert len(asset.content) > 100_000  # the whole UI, not a loader that fetches more
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css")


def test_swagger_ui_does_not_call_the_online_validator(server: ServerProcess) -> None:
    html = httpx.get(f"{server.url}/docs").text
    assert '"validatorUrl": null' in html

