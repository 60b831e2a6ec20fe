"""``/ui/fleets/{job_id}``: a fleet's tenants, a page at a time (:func:`~modelyard.jobs.
fleet_view.fleet_view`, as ``GET /jobs/{id}/fleet/tenants``), with counts by state and level at
the top, filters (failed only, level, name), and a retry button that calls
:func:`~modelyard.jobs.fleet.retry_children`, as ``POST /jobs/{id}/retry`` does.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse

from modelyard.api.deps import Services, services
from modelyard.api.params import Offset
from modelyard.api.redact import redactor_for
from modelyard.jobs import fleet
from modelyard.jobs.fleet_view import PAGE_SIZE, Level, fleet_view
from modelyard.request.limits import MAX_LABEL_CHARS
from modelyard.ui.forms import choice
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)

JobId = Annotated[str, Path(max_length=64, description="the fleet's parent job")]


@router.get("/ui/fleets/{job_id}")
def fleet_page(request: Request, job_id: JobId, svc: Annotated[Services, Depends(services)],
               offset: Offset = 0, failed: bool = False,
               level: Annotated[str | None, Query(max_length=16)] = None,
               q: Annotated[str | None, Query(max_length=MAX_LABEL_CHARS)] = None
               ) -> HTMLResponse:
    chosen = choice(Level, level, "level", "serving level")
    with svc.sessions() as session:
        view = fleet_view(session, job_id, offset=offset, limit=PAGE_SIZE, failed_only=failed,
                          level=chosen, search=q or None)
    shown = redactor_for(svc.settings).text
    view = dataclasses.replace(view, lines=[
        dataclasses.replace(x, failure=shown(x.failure)) if x.failure else x
        for x in view.lines])
    return render(request, "fleet.html", view=view, failed=failed, level=chosen, q=q or "",
                  levels=list(Level))


@router.post("/ui/fleets/{job_id}/retry")
def retry(request: Request, job_id: JobId, svc: Annotated[Services, Depends(services)]
          ) -> HTMLResponse:
    """Retrain the tenants that did not succeed."""
    with svc.sessions() as session:
        created = fleet.retry_children(session, job_id, None)
    svc.wake_dispatcher()
    return render(request, "_retried.html", job_id=job_id,
                  tenants=[tenant for _, tenant in created])

