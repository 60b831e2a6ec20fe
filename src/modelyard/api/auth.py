"""Who calls, checked before anything else: bearer tokens, roles, and the identity routes record.

:class:`AuthMiddleware` is pure ASGI and wraps every other layer: it reads the
``Authorization: Bearer <token>`` header, looks up the role the path needs in :data:`RULES`,
and answers 401 or 403 before one byte of the body is read (with ``Connection: close`` when a
body was coming, so the server stops receiving it). FastAPI's dependencies would run only after
it has parsed the body. Routes get the caller from :func:`caller`.

Auth is on when the server has ``MODELYARD_TOKEN`` (one shared admin identity, ``token``) or
its database holds tokens (``modelyard tokens create``, ``POST /tokens``); revoked ones count,
so revoking every token never opens the server. With auth off every caller is
:data:`~modelyard.auth.roles.ANONYMOUS`: allowed everything, named by what its requests say.

Tokens are looked up by their sha256 in the database, off the event loop, and remembered for
:data:`CACHE_SECONDS`: a token revoked through another server (or the CLI) stops working
within that time; one revoked through this server at once. The scheme is matched without
regard to case (``bearer`` too), as RFC 7235 (section 2.1) says of every auth-scheme.
``/docs``, ``/redoc`` and ``/openapi.json`` also take ``?token=``, for browsers; no other route
does, so that tokens stay out of URLs and logs. The web UI's pages (``/ui/...``) and the docs take
the session cookie a browser gets at ``/ui/login`` (no other route does: the API is never driven
by a cookie), and a change through them needs its CSRF token
(:mod:`modelyard.api.browser`); a browser without a session is sent to the login page.
``/healthz``, ``/readyz``, ``/``, the login page and the static assets need no token.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

import anyio
from fastapi import FastAPI, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.api.browser import (
    LOGIN_PATH,
    LOGOUT_PATH,
    STATIC_PREFIX,
    csrf_header_ok,
    is_ui,
    login_location,
    session_token,
)
from modelyard.auth.roles import ANONYMOUS, SHARED, Identity, Role
from modelyard.auth.tokens import hash_token, identity_of, tokens_exist
from modelyard.errors import ConfigurationError, Forbidden, RequestError

CACHE_SECONDS = 5.0
IDENTITY = "modelyard.identity"  # the scope key the middleware puts the caller under
# "/" only redirects to the UI; login and logout check their forms' CSRF token themselves.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/", LOGIN_PATH, LOGOUT_PATH})
PUBLIC_PREFIXES = ("/static/", STATIC_PREFIX)  # the pages' scripts and styles: no data
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_CACHED = 10_000


RULES: tuple[tuple[str, Role, Role], ...] = (
    # path prefix, the role to read (GET, HEAD, OPTIONS), the role to change anything; the
    # first match wins
    ("/tokens", Role.admin, Role.admin),
    ("/whoami", Role.viewer, Role.viewer),
    ("/train", Role.viewer, Role.trainer),
    ("/job", Role.viewer, Role.trainer),  # /job/{id}/... (Railyard's form) and /jobs...
    ("/pipelines", Role.viewer, Role.trainer),  # a deploy step passes the model's own gate
    ("/predict/", Role.viewer, Role.trainer),
    ("/labels", Role.viewer, Role.trainer),
    ("/outcomes", Role.viewer, Role.trainer),
    # An experiment sends live traffic to versions that are not production: an approver's call.
    ("/experiments", Role.viewer, Role.approver),
    ("/serving/", Role.viewer, Role.trainer),
    ("/models", Role.viewer, Role.approver),  # approve, stages, rollback, policy
    ("/ui/models", Role.viewer, Role.approver),  # the UI's buttons call the same functions
    ("/ui/experiments", Role.viewer, Role.approver),  # Stop and Ship, as /experiments
    ("/ui/jobs", Role.viewer, Role.trainer),
    ("/ui", Role.viewer, Role.trainer),
    ("/metrics", Role.viewer, Role.viewer),  # Prometheus scrapes with a viewer's token
    *((path, Role.viewer, Role.viewer) for path in sorted(DOCS_PATHS)),
)
"""Who may do what, by path: one table, read by the middleware and by the OpenAPI document. A
path no rule names needs an admin, so a new route is closed until it is given a rule."""


def needed_role(method: str, path: str) -> Role:
    """The role :data:`RULES` ask of ``method`` on ``path`` (a route path or its template)."""
    for prefix, reads, writes in RULES:
        if path.startswith(prefix):
            return reads if method in READS else writes
    return Role.admin


async def caller(request: Request) -> Identity:
    """Dependency: who calls (:data:`~modelyard.auth.roles.ANONYMOUS` when auth is off)."""
    identity = request.scope.get(IDENTITY)
    if not isinstance(identity, Identity):
        raise ConfigurationError(
            f"{request.method} {request.url.path} has no caller identity: wrap the app in "
            "modelyard.api.auth.AuthMiddleware (create_app does)")
    return identity


def check_role(identity: Identity, needed: Role, method: str, path: str) -> None:
    """Raises Forbidden, naming the role needed, unless ``identity`` holds ``needed``."""
    if not identity.role.allows(needed):
        raise Forbidden(
            f"{method} {path} needs the {needed} role; {identity.name!r} has {identity.role}: "
            f"ask an admin for a token with it (modelyard tokens create NAME --role {needed})")


def actor_of(identity: Identity, claimed: str | None, field: str) -> str:
    """The name an audit records: the token's identity (a name in the body is ignored); with
    auth off, the name the body gives in ``field``.

    Raises:
        RequestError: auth is off and the body names nobody.
    """
    if identity.authenticated:
        return identity.name
    if not claimed or not claimed.strip():
        raise RequestError(f"{field}: name who acts (this server has no tokens, so the audit "
                           "records the name the request gives)")
    return claimed


class Authenticator:
    """Who a token is: ``MODELYARD_TOKEN`` (the shared admin), or a named token of the database.

    Args:
        shared_token: the server's ``MODELYARD_TOKEN``, if any.
        sessions: the database's sessions.
        ttl: seconds a looked-up token, and the answer "the server has no tokens", are kept.
    """

    def __init__(self, shared_token: str | None, sessions: sessionmaker[Session],
                 ttl: float = CACHE_SECONDS) -> None:
        self._shared = shared_token.encode() if shared_token else None
        self._sessions = sessions
        self._ttl = ttl
        self._on = self._shared is not None
        self._checked = -math.inf
        self._cache: dict[str, tuple[Identity, float]] = {}

    async def enabled(self) -> bool:
        """Whether callers need a token (once on, on for good: tokens are never deleted)."""
        now = time.monotonic()
        if not self._on and now >= self._checked + self._ttl:
            self._checked = now
            self._on = await anyio.to_thread.run_sync(self._tokens_exist)
        return self._on

    async def identify(self, token: bytes) -> Identity | None:
        """The identity of ``token``, or None if it is unknown or revoked."""
        if self._shared is not None and secrets.compare_digest(token, self._shared):
            return SHARED
        text = token.decode("utf-8", "replace")
        digest = hash_token(text)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        identity = await anyio.to_thread.run_sync(self._lookup, text)
        if identity is not None:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (identity, now + self._ttl)
        return identity

    def forget(self) -> None:
        """Drop remembered tokens (a token was revoked through this server)."""
        self._cache.clear()
        self._checked = -math.inf

    def _tokens_exist(self) -> bool:
        with self._sessions() as session:
            return tokens_exist(session)

    def _lookup(self, token: str) -> Identity | None:
        with self._sessions() as session:
            return identity_of(session, token)


class AuthMiddleware:
    """Authenticate and authorize each HTTP request before the app reads its body (see the
    module docstring); the identity goes into the scope for :func:`caller`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope) if scope["type"] == "http" else ""
        if not path or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        ui = is_ui(path)
        if ui and scope["method"] not in READS and not csrf_header_ok(scope):
            await _refuse(scope, send, 403, "Forbidden", (
                f"{scope['method']} {path} came without the page's CSRF token (header "
                "X-CSRF-Token equal to the modelyard_csrf cookie): reload the page and try "
                "again"), 'Bearer realm="modelyard"')
            return
        auth: Authenticator = scope["app"].state.services.auth
        if not await auth.enabled():
            scope[IDENTITY] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        token = (_bearer(scope) or (_query_token(scope) if path in DOCS_PATHS else None)
                 or (session_token(scope) if ui or path in DOCS_PATHS else None))
        identity = await auth.identify(token) if token else None
        if identity is None and ui and scope["method"] in READS:
            await _redirect(send, login_location(scope))
            return
        if identity is None:
            how = " (or ?token=TOKEN on /docs and /redoc)" if path in DOCS_PATHS else ""
            await _refuse(scope, send, 401, "Unauthorized", (
                f"missing or wrong bearer token: send 'Authorization: Bearer <token>'{how}, a "
                "token from `modelyard tokens create` or the server's MODELYARD_TOKEN (the "
                "client and CLI send MODELYARD_TOKEN)"),
                'Bearer realm="modelyard"' + (', error="invalid_token"' if token else ""))
            return
        try:
            check_role(identity, needed_role(scope["method"], path), scope["method"], path)
        except Forbidden as exc:
            await _refuse(scope, send, 403, "Forbidden", str(exc),
                          'Bearer realm="modelyard", error="insufficient_scope"')
            return
        scope[IDENTITY] = identity
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() != b"bearer":
                return None
            return token.strip() or None
    return None


def _query_token(scope: Scope) -> bytes | None:
    raw: bytes = scope.get("query_string", b"")
    query = raw.decode("latin-1")
    for key, value in parse_qsl(query):
        if key == "token" and value:
            return value.encode()
    return None


async def _refuse(scope: Scope, send: Send, status: int, error: str, message: str,
                  challenge: str) -> None:
    body = json.dumps({"error": error, "message": message}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               (b"www-authenticate", challenge.encode())]
    if any(name == b"transfer-encoding" or (name == b"content-length" and value != b"0")
           for name, value in scope["headers"]):
        headers.append((b"connection", b"close"))  # a body is coming: do not read it
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")),
                            (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def document_auth(app: FastAPI) -> None:
    """Declare the bearer scheme in ``app``'s OpenAPI document, and on each operation the role
    it needs (OpenAPI 3.1 lets a non-OAuth requirement list role names) and its 401 and 403
    answers; ``/healthz`` and ``/readyz`` need nothing."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer",
            "description": "a token from `modelyard tokens create` (or the server's "
                           "MODELYARD_TOKEN); needed once the server has tokens"}
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                if isinstance(operation, dict) and method.upper() in _METHODS:
                    _document_operation(operation, method.upper(), path)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_operation(operation: dict[str, Any], method: str, path: str) -> None:
    if path in PUBLIC_PATHS:
        operation["security"] = []
        return
    role = needed_role(method, path)
    operation["security"] = [{"bearer": [role.value]}]
    responses = operation.setdefault("responses", {})
    responses.setdefault("401", {"description": "No token, or an unknown or revoked one",
                                 "content": {"application/json": {"schema": _ERROR}}})
    refused = f"The token's role is below {role}" + (
        "; or its identity submitted the job that trained the version (four eyes)"
        if path.endswith("/approve") else "")
    responses.setdefault("403", {"description": refused,
                                 "content": {"application/json": {"schema": _ERROR}}})


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ERROR = {"type": "object", "required": ["error", "message"],
          "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}
