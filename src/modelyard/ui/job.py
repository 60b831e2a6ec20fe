"""``/ui/jobs/{job_id}``: one job, everything recorded about it.

Its state transitions (times and reasons), a timeline of its steps, the log (polled while the
job runs), why it failed, its metrics and plots, the request as YAML, and its provenance: the
workflow's code snapshot, the data's fingerprint, the packages. All of it comes from the store
and artefact functions the JSON routes use (``GET /jobs/{id}``, ``/logs``, ``/plots``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse

from modelyard.api.deps import Services, services
from modelyard.api.redact import redactor_for
from modelyard.api.schemas import JobStatus, status_of
from modelyard.artifacts import ArtifactStore
from modelyard.errors import Conflict, NotFound
from modelyard.jobs import plots, store
from modelyard.jobs.diffs import as_yaml
from modelyard.jobs.joblog import JobLog
from modelyard.jobs.provenance import read_provenance
from modelyard.jobs.states import JobState
from modelyard.registry import store as registry
from modelyard.ui.charts import spec
from modelyard.ui.plot_charts import job_charts
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)
LOG_TAIL_BYTES = 64 * 1024
POLL = "every 2s"

JobId = Annotated[str, Path(max_length=64, description="the job's id")]


@dataclass(frozen=True)
class Bar:
    """A step on the timeline: where it starts and how wide it is, in % of the job's run."""

    name: str
    duration_s: float
    left: float
    width: float


def timeline(status: JobStatus, now: dt.datetime) -> list[Bar]:
    """The finished steps as bars on the job's run from its start to its end (or ``now``)."""
    steps = [s for s in status.steps if s.duration_s is not None]
    if not steps:
        return []
    start = min([s.started_at for s in steps] + ([status.started_at] if status.started_at
                                                  else []))
    end = max([s.started_at + dt.timedelta(seconds=s.duration_s or 0) for s in steps]
              + [status.finished_at or now])
    span = max((end - start).total_seconds(), 1e-9)
    return [Bar(s.name, s.duration_s or 0.0,
                round(100 * (s.started_at - start).total_seconds() / span, 2),
                max(round(100 * (s.duration_s or 0.0) / span, 2), 0.3)) for s in steps]


@router.get("/ui/jobs/{job_id}")
def job_page(request: Request, svc: Annotated[Services, Depends(services)],
             job_id: JobId) -> HTMLResponse:
    shown = redactor_for(svc.settings)
    artifacts = ArtifactStore(svc.settings.artifact_root)
    with svc.sessions() as session:
        job, transitions, steps = store.snapshot_job(session, job_id)
        status = status_of(job, transitions, steps, redact=shown.text)
        versions = registry.versions_of_jobs(session, [job_id])
        request_yaml = as_yaml(job.request)
        found_plots, plots_note = _plots(artifacts, job)
    provenance = read_provenance(artifacts, job_id) if job.model_id else None
    log_text, _ = JobLog(job.log_file).read(most=LOG_TAIL_BYTES)
    recorded = (job.result or {}).get("metrics")
    metrics = recorded if isinstance(recorded, dict) else {}
    return render(
        request, "job.html", job=job, status=status, live=not JobState(job.state).terminal,
        error=shown.exception_info(job.exception_info), bars=timeline(status, _now()),
        versions=versions, request_yaml=request_yaml,
        metrics={k: v for k, v in metrics.items() if k != "notes"},
        notes=metrics.get("notes") or [],
        charts=[(name, spec(c)) for name, c in job_charts(found_plots)] if found_plots else [],
        plots_note=shown.text(plots_note) if plots_note else None,
        provenance=provenance, redact=shown.text, log=log_text, poll=POLL)


@router.get("/ui/jobs/{job_id}/log")
def job_log(request: Request, svc: Annotated[Services, Depends(services)], job_id: JobId,
            live: Annotated[bool, Query(description="the page shows the job running")] = False
            ) -> HTMLResponse:
    """The log's tail, for the page's polling. Once the job has ended, a page that showed it
    running reloads whole (``HX-Refresh``), to show how it ended."""
    with svc.sessions() as session:
        job = store.read_job(session, job_id)
    running = not JobState(job.state).terminal
    log_text, _ = JobLog(job.log_file).read(most=LOG_TAIL_BYTES)
    response = render(request, "job_log.html", job=job, live=running, log=log_text, poll=POLL)
    if live and not running:
        response.headers["HX-Refresh"] = "true"
    return response


def _plots(artifacts: ArtifactStore, job: Any) -> tuple[plots.JobPlots | None, str | None]:
    """The job's plots, or why there are none."""
    try:
        return plots.job_plots(artifacts, job), None
    except (Conflict, NotFound) as exc:
        return None, str(exc)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
