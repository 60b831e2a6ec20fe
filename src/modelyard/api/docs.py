"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served with the package's own assets.

FastAPI's default pages load their JavaScript, CSS, favicon and fonts from CDNs, so on a machine
with no internet they stay blank. Here the pages point at copies vendored under ``static/``
(versions and licenses in ``static/README.md``), mounted at :data:`STATIC_PATH`. The assets need
no token: they hold no data. When the server has tokens, the pages and ``/openapi.json`` do
(:mod:`modelyard.api.auth`); a browser sends none of its own, so the pages take ``?token=`` and
hand it on to the ``/openapi.json`` they load.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"


def add_docs(app: FastAPI) -> None:
    """Mount the vendored assets and add ``/docs`` and ``/redoc`` to ``app``.

    Create ``app`` with ``docs_url=None, redoc_url=None``, so that FastAPI's CDN pages are not
    registered beside these.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError(
            f"create the app with docs_url=None and redoc_url=None before add_docs; got "
            f"docs_url={app.docs_url!r}, redoc_url={app.redoc_url!r} instead"
        )
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("add_docs needs the app's OpenAPI schema: openapi_url is None")
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        static = _prefix(request) + STATIC_PATH
        return get_swagger_ui_html(
            openapi_url=_prefix(request) + openapi_url + _token_query(request),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{static}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{static}/swagger-ui/favicon-32x32.png",
            # The default validator badge is an image from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        static = _prefix(request) + STATIC_PATH
        return get_redoc_html(
            openapi_url=_prefix(request) + openapi_url + _token_query(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{static}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{static}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )


def _token_query(request: Request) -> str:
    """The page's own ``?token=``, for the schema URL (quoted: it lands inside a script)."""
    token = request.query_params.get("token")
    return f"?token={quote(token, safe='')}" if token else ""


def _prefix(request: Request) -> str:
    """The path the app is mounted under behind a proxy (``root_path``), as FastAPI's pages use."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")
