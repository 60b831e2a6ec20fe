"""GET /healthz (liveness) and GET /readyz (readiness) for load balancers, Kubernetes' probes
and tests; neither needs a token.

``/healthz`` answers while the process runs. ``/readyz`` answers 200 once the app has started
(routing table read, services up) and 503 from the first SIGTERM on, while the server drains
(``--drain-seconds``, see :mod:`modelyard.server`): a balancer stops sending it new requests
before its listener closes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from modelyard._version import __version__
from modelyard.api.deps import Services, services
from modelyard.api.schemas import DegradedServing, Health, Readiness

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


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "starting or draining"}})
async def readyz(request: Request) -> JSONResponse:
    """Whether to send this server requests: 503 while it starts or drains after SIGTERM.
    On the event loop, not a worker thread: a balancer's check under load waits only for the
    loop."""
    state = request.app.state
    if getattr(state, "draining", False):
        status = "draining"
    elif getattr(state, "serving", None) is None:
        status = "starting"
    else:
        status = "ready"
    return JSONResponse(Readiness(status=status).model_dump(),
                        status_code=200 if status == "ready" else 503)
