"""What the API reads is bounded: body sizes, and the work one train request can cost.

:class:`BodyLimitMiddleware` answers 413 as soon as a request's ``Content-Length`` is over its
route's limit, or its streamed body passes it, without reading the rest (the answer closes the
connection, so the server stops receiving). Limits are settings: ``--max-body-bytes`` for every
route, ``--max-predict-body-bytes`` for ``POST /predict/{name}``, whose rows are data.

:func:`read_train_request` parses ``POST /train`` bodies within a budget of JSON values
(:data:`MAX_JSON_VALUES`), off the event loop: :mod:`modelyard.jsonbody` says why the budget, not
the thread, is what keeps ``/healthz`` answering.
"""

from __future__ import annotations

import json

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.jsonbody import read_json_body
from modelyard.request.models import TrainRequest

MAX_JSON_VALUES = 50_000
"""Values (counted as ``,``, ``[`` and ``{`` in the body) a train request may hold."""


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (``by_prefix``: other limits for some paths).

    Args:
        app: the ASGI app to protect.
        max_bytes: the limit of every route not in ``by_prefix``.
        by_prefix: ``(path prefix, limit, setting)``; the first matching prefix wins.
        setting: the server flag that sets ``max_bytes``, for the 413's message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, setting: str,
                 by_prefix: tuple[tuple[str, int, str], ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.setting = setting
        self.by_prefix = by_prefix

    def limit_for(self, scope: Scope) -> tuple[int, str]:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        for prefix, limit, setting in self.by_prefix:
            if path.startswith(prefix):
                return limit, setting
        return self.max_bytes, self.setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_too_large(send, scope, limit, setting, declared)
            return
        guard = _Guard(receive, send, scope, limit, setting)
        try:
            await self.app(scope, guard.receive, guard.send)
        except _BodyTooLarge:
            if not guard.answered:
                raise


class _BodyTooLarge(Exception):
    """Raised into the app when its body passed the limit (the 413 is already sent)."""


class _Guard:
    """One request's ``receive`` and ``send``: counts the body; after a 413, drops the app's
    own answer."""

    def __init__(self, receive: Receive, send: Send, scope: Scope, limit: int,
                 setting: str) -> None:
        self._receive, self._send, self._scope = receive, send, scope
        self.limit, self.setting = limit, setting
        self.received = 0
        self.started = False
        self.answered = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit and not self.started:
                self.answered = True
                await _send_too_large(self._send, self._scope, self.limit, self.setting, None)
                raise _BodyTooLarge
            if self.received > self.limit:
                raise _BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


async def _send_too_large(send: Send, scope: Scope, limit: int, setting: str,
                          declared: int | None) -> None:
    size = f"of {declared:,} bytes " if declared is not None else ""
    message = (f"the request body {size}is over this server's limit of {_size(limit)} for "
               f"{scope['method']} {scope['path']}; send less (e.g. fewer rows per call), or "
               f"start the server with a larger {setting}")
    body = json.dumps({"error": "RequestError", "message": message,
                       "limit_bytes": limit}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _size(limit: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= scale and limit % scale == 0:
            return f"{limit // scale} {unit} ({limit:,} bytes)"
    return f"{limit:,} bytes"


async def read_train_request(request: Request) -> TrainRequest:
    """The ``POST /train`` body as a :class:`TrainRequest`, parsed and validated within
    :data:`MAX_JSON_VALUES` values, off the event loop (:mod:`modelyard.jsonbody`)."""
    return await read_json_body(request, TrainRequest, MAX_JSON_VALUES, "a train request")
