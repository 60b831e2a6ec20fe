"""``/ui/compare``: two or more jobs, or versions of a model, side by side.

``?jobs=ID1,ID2[,...]`` (the jobs page's checkboxes send ``jobs`` once per job, which works
too) or ``?model=NAME&versions=3,4[&tenant=T]``. They are shown oldest first, and the first
is the baseline that deltas and diffs are taken against. The comparison itself is
:func:`modelyard.jobs.comparison.compare_jobs`; where the registry compared two of them on the
same rows, the page says so and shows those figures.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from modelyard.api.deps import Services, services
from modelyard.api.params import OptionalModelName
from modelyard.api.redact import redactor_for
from modelyard.artifacts import ArtifactStore
from modelyard.errors import RequestError
from modelyard.jobs.comparison import MAX_COMPARED, Comparison, compare_jobs, job_ids_of_versions
from modelyard.registry.stages import GLOBAL_TENANT
from modelyard.request.limits import MAX_NAME_CHARS
from modelyard.ui.charts import spec
from modelyard.ui.plot_charts import pr_chart, roc_chart
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)
HOW = "pick two or more jobs to compare (?jobs=ID1,ID2) or a model's versions " \
      "(?model=NAME&versions=3,4)"

Listed = Annotated[list[str], Query(max_length=MAX_COMPARED)]


def listed(values: list[str], name: str) -> list[str]:
    """The comma-separated (or repeated) values of query parameter ``name``."""
    found = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if len(found) > MAX_COMPARED:
        raise RequestError(f"{name}: at most {MAX_COMPARED} to compare; got {len(found)}")
    if len(set(found)) < len(found):
        raise RequestError(f"{name}: {', '.join(found)} names one twice; {HOW}")
    return found


def version_numbers(values: list[str]) -> list[int]:
    numbers = []
    for value in listed(values, "versions"):
        if not value.isdigit() or not 1 <= int(value) < 2**31:
            raise RequestError(f"versions: {value!r} is not a version number (1, 2, ...); "
                               f"{HOW}")
        numbers.append(int(value))
    return numbers


@router.get("/ui/compare")
def compare_page(
    request: Request, svc: Annotated[Services, Depends(services)], jobs: Listed = [],  # noqa: B006
    model: OptionalModelName = None, versions: Listed = [],  # noqa: B006
    tenant: Annotated[str, Query(max_length=MAX_NAME_CHARS)] = GLOBAL_TENANT,
) -> HTMLResponse:
    job_ids = listed(jobs, "jobs")
    if model is not None and job_ids:
        raise RequestError(f"jobs and model: give one of them; {HOW}")
    with svc.sessions() as session:
        if model is not None:
            numbers = version_numbers(versions)
            if len(numbers) < 2:
                raise RequestError(f"versions: got {len(numbers)} of {model!r}; {HOW}")
            job_ids = job_ids_of_versions(session, model, numbers, tenant)
        elif len(job_ids) < 2:
            raise RequestError(f"jobs: got {len(job_ids)}; {HOW}")
        found = compare_jobs(session, ArtifactStore(svc.settings.artifact_root), job_ids,
                             redact=redactor_for(svc.settings).text)
    return render(request, "compare.html", c=found, charts=_charts(found), model=model)


def _charts(found: Comparison) -> list[tuple[str, dict[str, object]]]:
    """The jobs' ROC and precision-recall curves, overlaid (those that have them)."""
    roc = [(j.label, j.plots.roc) for j in found.jobs if j.plots and j.plots.roc]
    pr = [(j.label, j.plots.precision_recall) for j in found.jobs
          if j.plots and j.plots.precision_recall]
    out: list[tuple[str, dict[str, object]]] = []
    if roc:
        out.append(("roc", spec(roc_chart(roc))))
    if pr:
        out.append(("pr", spec(pr_chart(pr))))
    return out
