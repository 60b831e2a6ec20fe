"""``/ui/jobs``: the jobs table, with the filters, search and paging of ``GET /jobs``.

The filters are a GET form, so a filtered list is a URL to bookmark or share. While a listed
job is queued or running, the table's body polls ``/ui/jobs/rows`` (the same query) and
replaces itself; the answer polls again only while a job it lists is still active, so polling
stops by itself once they all ended. The rows carry checkboxes: two or more ticked go to
``/ui/compare``, and the poll sends them along, so a refresh keeps them ticked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from modelyard.api.deps import Services, services
from modelyard.api.params import Offset
from modelyard.api.redact import redactor_for
from modelyard.api.schemas import JobSummary, summary_of
from modelyard.jobs import listing
from modelyard.jobs.states import JobState
from modelyard.request.limits import MAX_LABEL_CHARS
from modelyard.ui.forms import choice
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
POLL = "every 2s"

Label = Annotated[str | None, Query(max_length=MAX_LABEL_CHARS)]


@dataclass(frozen=True)
class JobsQuery:
    """What a jobs table shows: the filters, the page, and the ticked jobs."""

    where: listing.JobFilter
    limit: int
    offset: int
    ticked: frozenset[str]

    @property
    def filtered(self) -> bool:
        return self.where != listing.JobFilter()

    def url(self, path: str, **changes: object) -> str:
        """``path`` with this query (``changes`` replaced), empty filters left out."""
        params = {"state": self.where.state.value if self.where.state else None,
                  "model_name": self.where.model_name, "owner": self.where.owner,
                  "project": self.where.project, "search": self.where.search,
                  "limit": self.limit if self.limit != PAGE_SIZE else None,
                  "offset": self.offset or None, **changes}
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{path}?{query}" if query else path


def jobs_query(
    state: Annotated[str | None, Query(max_length=16)] = None, model_name: Label = None,
    owner: Label = None, project: Label = None, search: Label = None,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE, offset: Offset = 0,
    jobs: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006 (FastAPI copies it)
) -> JobsQuery:
    """The query of a jobs table; an empty field of the form means no filter."""
    def given(value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    where = listing.JobFilter(state=choice(JobState, state, "state", "job state"),
                              model_name=given(model_name),
                              owner=given(owner), project=given(project), search=given(search))
    return JobsQuery(where, limit, offset, frozenset(jobs))



Query_ = Annotated[JobsQuery, Depends(jobs_query)]


def _rows(svc: Services, query: JobsQuery) -> tuple[list[JobSummary], int]:
    with svc.sessions() as session:
        rows, total = listing.list_jobs(session, query.where, limit=query.limit,
                                        offset=query.offset)
    shown = redactor_for(svc.settings)
    return [summary_of(j, redact=shown.text) for j in rows], total


def _live(jobs: list[JobSummary]) -> bool:
    return any(not j.state.terminal for j in jobs)


@router.get("/ui/jobs")
def jobs_page(request: Request, svc: Annotated[Services, Depends(services)],
              query: Query_) -> HTMLResponse:
    jobs, total = _rows(svc, query)
    return render(request, "jobs.html", jobs=jobs, total=total, query=query,
                  where=query.where, states=list(JobState), live=_live(jobs), poll=POLL)


@router.get("/ui/jobs/rows")
def jobs_rows(request: Request, svc: Annotated[Services, Depends(services)],
              query: Query_) -> HTMLResponse:
    """The table's body alone, for the page's polling."""
    jobs, _ = _rows(svc, query)
    return render(request, "jobs_rows.html", jobs=jobs, query=query, live=_live(jobs),
                  poll=POLL)
