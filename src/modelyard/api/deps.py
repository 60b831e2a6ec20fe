"""FastAPI dependencies: the app's services, a database session, and who calls.

Tokens and roles are checked by :class:`modelyard.api.auth.AuthMiddleware`, before a request's
body is read; routes read the result with :data:`Who`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from modelyard.api.auth import Authenticator, caller
from modelyard.api.notify import JobNotifier
from modelyard.auth.roles import Identity
from modelyard.jobs.dispatcher import Dispatcher
from modelyard.pipelines.runner import PipelineRunner
from modelyard.settings import Settings

Who = Annotated[Identity, Depends(caller)]
"""A route's parameter: who calls (its name is what audits record)."""


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    dispatcher: Dispatcher | None
    notifier: JobNotifier
    pipelines: PipelineRunner | None = None
    auth: Authenticator = field(init=False)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.settings.token, self.sessions)

    def wake_dispatcher(self, *, cancelled: bool = False) -> None:
        """A job was queued or ``cancelled``: wake the dispatcher (serving replicas have none)."""
        if self.dispatcher is not None:
            self.dispatcher.wake(cancelled=cancelled)

    def wake_pipelines(self) -> None:
        """A pipeline run was started: have the runner look now."""
        if self.pipelines is not None:
            self.pipelines.wake()


def app_services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def services(request: Request) -> Services:
    """The app's services (async: FastAPI runs it without a thread hop)."""
    return app_services(request)


def db_session(request: Request) -> Iterator[Session]:
    with app_services(request).sessions() as session:
        yield session


async def require_token(request: Request) -> Identity:
    """Every router's guard: the caller, whose token and role the middleware accepted; raises if
    the app has no :class:`~modelyard.api.auth.AuthMiddleware`, so no route is open by accident.
    """
    return await caller(request)
