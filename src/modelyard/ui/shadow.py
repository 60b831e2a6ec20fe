"""``/ui/models/{name}/shadow``: each shadow version against production on the same requests,
from :meth:`~modelyard.serving.service.ServingService.shadow_report` (what
``GET /models/{name}/shadow-report`` answers): both score histograms overlaid, the mean shadow
score per production-score bin against the diagonal, and agreement, KS, PSI and both AUCs once
labels have arrived.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from modelyard.api.params import ModelName, OptionalTenant
from modelyard.errors import NotFound
from modelyard.serving.report import ShadowComparison
from modelyard.ui.charts import Chart, Series, spec
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)


@router.get("/ui/models/{model_name}/shadow")
async def shadow_page(request: Request, model_name: ModelName, tenant: OptionalTenant = None,
                      threshold: Annotated[float, Query(gt=0, lt=1)] = 0.5) -> HTMLResponse:
    serving = getattr(request.app.state, "serving", None)
    if serving is None:
        raise NotFound("this server does not serve models, so it has no shadow log; open the "
                       "page on a server started with `modelyard server`")
    report = await serving.shadow_report(model_name, threshold, tenant)
    charts = [(s, spec(histogram_chart(s)), spec(agreement_chart(s))) for s in report.shadows]
    return render(request, "shadow.html", report=report, charts=charts, tenant=tenant)


def histogram_chart(s: ShadowComparison) -> Chart:
    h = s.histogram
    left = h.edges[:-1]
    return Chart(kind="bars", title=f"Scores: production v{s.production_version} and shadow "
                 f"v{s.shadow_version}", x_label="score", y_label="rows", series=(
                     Series(f"production v{s.production_version}", left, h.production),
                     Series(f"shadow v{s.shadow_version}", left, h.shadow)))


def agreement_chart(s: ShadowComparison) -> Chart:
    h = s.histogram
    # Empty bins have no mean: left out rather than drawn as gaps.
    points = [((a + b) / 2, m) for a, b, m in zip(h.edges[:-1], h.edges[1:],
                                                   h.mean_shadow_by_production, strict=True)
              if m is not None]
    return Chart(kind="line", title="Mean shadow score by production score",
                 x_label=f"production v{s.production_version} score",
                 y_label=f"shadow v{s.shadow_version} score (mean)", diagonal=True,
                 series=(Series("mean shadow score", [x for x, _ in points],
                                [y for _, y in points]),))
