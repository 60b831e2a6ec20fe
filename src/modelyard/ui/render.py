"""Render a page: the templates, their filters, and what every page gets (CSRF token, caller).

:func:`render` is the only way a page answers, so every page carries the CSRF token its
actions send back (:mod:`modelyard.api.browser`) and sets the CSRF cookie on a first visit.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from modelyard._version import __version__
from modelyard.api.auth import IDENTITY
from modelyard.api.browser import CSRF_COOKIE, SESSION_SECONDS, UI_PREFIX, new_csrf_token
from modelyard.auth.roles import ANONYMOUS

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# Scripts only from the server's own files (no inline script, no eval): a value that slipped
# past escaping still cannot run. Inline styles are allowed for the charts' shading.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
       "base-uri 'none'")

NAV: tuple[tuple[str, str], ...] = (
    ("Jobs", "/ui/jobs"),
    ("Models", "/ui/models"),
    ("Pipelines", "/ui/pipelines"),
    ("Experiments", "/ui/experiments"),
)


def duration(seconds: float | None) -> str:
    """``65.2`` -> ``1m 05s``; ``None`` -> an en dash."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def ago(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How long before ``now`` (UTC) ``when`` was: ``3 min ago``, ``2 d ago``."""
    if when is None:
        return "–"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = ((now or dt.datetime.now(dt.UTC)) - when).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now" if seconds < 5 else f"{int(seconds)} s ago"


def num(value: Any) -> str:
    """A metric to 4 significant figures; text passes through; missing is an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters.update(duration=duration, ago=ago, num=num)


def render(request: Request, template: str, *, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    """``template`` rendered with ``context`` plus ``csrf_token``, ``who`` and ``nav``."""
    token = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
    response = templates.TemplateResponse(request, template, {
        "csrf_token": token, "who": request.scope.get(IDENTITY, ANONYMOUS), "nav": NAV,
        "version": __version__, "path": request.url.path, **context}, status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, max_age=SESSION_SECONDS, path=UI_PREFIX,
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
    return response


def error_page(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    """A 4xx (or 5xx) as a page that says what was wrong and what to do."""
    return render(request, "error.html", status_code=status_code, title=title, message=message)
