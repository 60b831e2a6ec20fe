"""GET /healthz: liveness for load balancers and tests (no auth)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from modelyard._version import __version__
from modelyard.api.deps import Services, services
from modelyard.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(svc: Annotated[Services, Depends(services)]) -> Health:
    return Health(
        status="ok",
        version=__version__,
        executor=svc.settings.executor if svc.dispatcher else "none (serving only)",
        concurrency=svc.settings.concurrency,
        active_jobs=len(svc.dispatcher.active_jobs) if svc.dispatcher else 0,
    )
