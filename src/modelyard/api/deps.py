"""FastAPI dependencies: the app's services, a database session, bearer-token auth."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from modelyard.api.notify import JobNotifier
from modelyard.errors import Unauthorized
from modelyard.jobs.dispatcher import Dispatcher
from modelyard.settings import Settings


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    dispatcher: Dispatcher | None
    notifier: JobNotifier

    def wake_dispatcher(self, *, cancelled: bool = False) -> None:
        """A job was queued or ``cancelled``: wake the dispatcher (serving replicas have none)."""
        if self.dispatcher is not None:
            self.dispatcher.wake(cancelled=cancelled)


def app_services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def services(request: Request) -> Services:
    """The app's services (async: FastAPI runs it without a thread hop)."""
    return app_services(request)


def db_session(request: Request) -> Iterator[Session]:
    with app_services(request).sessions() as session:
        yield session


async def require_token(request: Request) -> None:
    token = app_services(request).settings.token
    if not token:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), token):
        raise Unauthorized(
            "missing or wrong bearer token: send 'Authorization: Bearer <MODELYARD_TOKEN>' "
            "(the client and CLI read MODELYARD_TOKEN)"
        )
