"""``/ui/jobs``: the jobs table (newest first), from the store function ``GET /jobs`` uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from modelyard.api.deps import Services, services
from modelyard.api.params import Offset
from modelyard.api.redact import redactor_for
from modelyard.api.schemas import summary_of
from modelyard.jobs import store
from modelyard.jobs.states import JobState
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/ui/jobs")
def jobs_page(request: Request, svc: Annotated[Services, Depends(services)],
              state: JobState | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
              offset: Offset = 0) -> HTMLResponse:
    with svc.sessions() as session:
        rows, total = store.list_jobs(session, state=state, limit=limit, offset=offset)
    shown = redactor_for(svc.settings)
    return render(request, "jobs.html", jobs=[summary_of(j, redact=shown.text) for j in rows],
                  total=total, limit=limit, offset=offset, state=state, states=list(JobState))
