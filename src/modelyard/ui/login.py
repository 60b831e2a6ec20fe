"""``/ui/login`` and ``/ui/logout``: trade a token for an HttpOnly session cookie, and back.

The cookie holds the token the person typed (it is theirs already), SameSite=Strict, HttpOnly
and, behind HTTPS, Secure. The middleware accepts it on the ``/ui`` pages and the API docs
only (the JSON API ignores cookies, so no other site can drive it through one) and checks it
like a bearer header on every request, so revoking the token ends the session within the token
cache's seconds. Both forms carry the CSRF token (:mod:`modelyard.api.browser`): a page on
another site can neither log a browser in as someone else nor out.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelyard.api.browser import (
    CSRF_COOKIE,
    CSRF_FIELD,
    LOGIN_PATH,
    SESSION_COOKIE,
    SESSION_SECONDS,
    UI_PREFIX,
    csrf_matches,
)
from modelyard.api.deps import app_services
from modelyard.ui.forms import read_form
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)
DEFAULT_NEXT = "/ui/jobs"
MAX_TOKEN_CHARS = 512


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a page of this UI, never another site."""
    if target and target.startswith(UI_PREFIX + "/") and not target.startswith("//") \
            and "\\" not in target and "\n" not in target and "\r" not in target:
        return target
    return DEFAULT_NEXT


@router.get(LOGIN_PATH)
async def login_page(request: Request, next: str | None = None) -> Response:
    if not await app_services(request).auth.enabled():
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post(LOGIN_PATH)
async def login(request: Request) -> Response:
    form = await read_form(request)
    target = safe_next(form.get("next"))
    if not csrf_matches(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
        return _again(request, target, 403, "The form expired: log in again.")
    token = form.get("token", "").strip()
    if not token or len(token) > MAX_TOKEN_CHARS:
        return _again(request, target, 400, "Enter a token.")
    identity = await app_services(request).auth.identify(token.encode())
    if identity is None:
        return _again(request, target, 401, (
            "Unknown or revoked token: use one from `modelyard tokens create` or the server's "
            "MODELYARD_TOKEN."))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    form = await read_form(request)
    if not csrf_matches(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
        return _again(request, DEFAULT_NEXT, 403, "The form expired: reload the page.")
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _again(request: Request, target: str, status: int, error: str) -> HTMLResponse:
    return render(request, "login.html", status_code=status, next=target, error=error)
