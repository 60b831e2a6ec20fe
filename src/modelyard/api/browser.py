"""What a browser carries instead of a bearer header: the session cookie, and the CSRF token.

The web UI (:mod:`modelyard.ui`) lives under :data:`UI_PREFIX`. A browser logs in once at
``/ui/login`` with a token; the server answers with :data:`SESSION_COOKIE`, HttpOnly and
SameSite=Strict, holding that token, which :class:`~modelyard.api.auth.AuthMiddleware` accepts
on UI paths and the API docs only: the JSON API keeps to the bearer header, so a cookie can
never drive it.

Every change a page makes (a POST, PUT, PATCH or DELETE under ``/ui``) must carry the CSRF token
twice: in :data:`CSRF_COOKIE`, set when a page is first rendered, and in the
:data:`CSRF_HEADER` header that htmx sends from the page (or, for a plain HTML form, the
:data:`CSRF_FIELD` field, which the form's own route compares). A page on another site can make
the browser send the cookie but cannot read it, so it cannot send the same value twice. This
holds with auth off too: an anonymous server's approve button must not be pressable from
another site.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from starlette.requests import cookie_parser
from starlette.types import Scope

UI_PREFIX = "/ui"
LOGIN_PATH = "/ui/login"
LOGOUT_PATH = "/ui/logout"
STATIC_PREFIX = "/ui/static/"
SESSION_COOKIE = "modelyard_session"
CSRF_COOKIE = "modelyard_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 12 * 3600


def is_ui(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies (the last ``Cookie`` header wins, as browsers send one)."""
    for name, value in scope["headers"]:
        if name == b"cookie":
            return cookie_parser(value.decode("latin-1"))
    return {}


def session_token(scope: Scope) -> bytes | None:
    token = cookies(scope).get(SESSION_COOKIE)
    return token.encode() if token else None


def csrf_matches(cookie: str | None, sent: str | None) -> bool:
    """Whether ``sent`` (header or form field) is the browser's CSRF cookie."""
    if not cookie or not sent:
        return False
    return secrets.compare_digest(cookie.encode(), sent.encode())


def csrf_header_ok(scope: Scope) -> bool:
    """The CSRF check of a change through htmx: the header equals the cookie."""
    sent = next((v.decode("latin-1") for k, v in scope["headers"] if k == CSRF_HEADER.encode()),
                None)
    return csrf_matches(cookies(scope).get(CSRF_COOKIE), sent)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def login_location(scope: Scope) -> str:
    """Where a browser without a session goes: the login page, then back to ``scope``'s page."""
    target = scope["path"]
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    return f"{scope.get('root_path', '')}{LOGIN_PATH}?next={quote(target, safe='')}"
