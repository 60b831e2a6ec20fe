"""``POST /predict/{name}`` dispatched without FastAPI's router: serving's hot path.

FastAPI finds a route by trying the app's routes in turn, then solves the route's dependencies
and validates its parameters; on a one-row predict that is most of the request's CPU, and a
request's CPU is what bounds the server's throughput and so, with many clients, its latency.
:class:`PredictPath` sits inside the auth and body-limit middlewares, recognises
``POST /predict/{name}`` by its path and calls the route's own function
(:func:`modelyard.serving.routes.predict`) with what FastAPI would have resolved, in the same
order: the caller's identity (:func:`~modelyard.api.deps.require_token`), the body parsed
within ``--max-predict-values`` (:func:`~modelyard.serving.routes.predict_body`), then the
model name (:func:`~modelyard.serving.routes.model_name_of`). Errors go to the app's own
exception handlers, looked up as Starlette's exception middleware looks them up; an error no
handler takes reaches the server-error middleware, as before. Other methods on the path, and
every other path, go to the app unchanged, and the route stays declared there, so OpenAPI
documents it and a GET still answers 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.api.deps import require_token
from modelyard.serving import routes as serving_routes

PREFIX = "/predict/"
Handler = Callable[[Request, Exception], Awaitable[Response]]


class PredictPath:
    """The ASGI layer that answers ``POST /predict/{name}`` (see the module's doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = _model_name(scope)
        if name is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await _predict(request, name)
        except Exception as exc:
            handler = _handler(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


async def _predict(request: Request, name: str) -> Response:
    await require_token(request)
    svc = await serving_routes.serving(request)
    body = await serving_routes.predict_body(request, svc)
    return await serving_routes.predict(serving_routes.model_name_of(name), body, svc, request)


def _model_name(scope: Scope) -> str | None:
    """The ``{name}`` of a ``POST /predict/{name}`` (the route's pattern: one path segment)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if not path.startswith(PREFIX):
        return None
    name = path[len(PREFIX):]
    return name if name and "/" not in name else None


def _handler(handlers: Mapping[Any, Handler], exc: Exception) -> Handler | None:
    """The app's handler of ``exc``: the first of its classes, most derived first, that has
    one (as Starlette's exception middleware chooses)."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
