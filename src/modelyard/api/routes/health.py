"""GET /healthz: liveness for load balancers and tests (no auth)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from modelyard._version import __version__
from modelyard.api.deps import Services, services
from modelyard.api.schemas import DegradedServing, Health

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(svc: Annotated[Services, Depends(services)], request: Request) -> Health:
    serving = getattr(request.app.state, "serving", None)
    degraded = serving.degraded.current() if serving is not None else []
    return Health(
        status="ok",
        version=__version__,
        executor=svc.settings.executor if svc.dispatcher else "none (serving only)",
        concurrency=svc.settings.concurrency,
        active_jobs=len(svc.dispatcher.active_jobs) if svc.dispatcher else 0,
        server_id=svc.dispatcher.server_id if svc.dispatcher else None,
        degraded=[DegradedServing.model_validate(d.public()) for d in degraded],
    )
