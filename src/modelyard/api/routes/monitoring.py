"""Monitoring over HTTP: drift, decay and staleness of the version that serves a tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from modelyard.api.deps import app_services, db_session, require_token
from modelyard.api.params import ModelName, OptionalTenant
from modelyard.api.schemas import error_responses
from modelyard.errors import RequestError
from modelyard.monitoring.history import MAX_WINDOWS, DriftHistory, drift_history
from modelyard.monitoring.service import monitor, report_json
from modelyard.request.dates import parse_window

router = APIRouter(prefix="/models", tags=["monitoring"], dependencies=[Depends(require_token)],
                   responses=error_responses(404, 422))

@router.get("/{model_name}/monitoring")
async def monitoring(
    request: Request, model_name: ModelName,
    session: Annotated[Session, Depends(db_session)],
    tenant: OptionalTenant = None,
    window: Annotated[str, Query(max_length=16, description="how far back: 30m, 12h, 7d, 2w"
                                 )] = "7d",
    traffic: Annotated[str | None, Query(max_length=4096, description=(
        "a parquet file (folder, glob) of recent traffic under the server's data roots, "
        "instead of the production log"))] = None,
) -> dict[str, Any]:
    """Feature and prediction drift, schema changes, decay by window and staleness of the
    version that serves ``tenant`` (its own production version, else its fallback), against
    that version's reference profile."""
    try:
        span = parse_window(window)
    except ValueError as exc:
        raise RequestError(f"window: {exc}") from None
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:
        # This server's buffered rows go to the log the report reads.
        await run_in_threadpool(serving.production_log.flush)
    settings = app_services(request).settings
    report = await run_in_threadpool(monitor, session, settings, model_name, tenant, span,
                                     traffic=traffic)
    return report_json(report)


@router.get("/{model_name}/monitoring/history")
async def monitoring_history(
    request: Request, model_name: ModelName,
    session: Annotated[Session, Depends(db_session)],
    tenant: OptionalTenant = None,
    days: Annotated[int, Query(ge=1, le=MAX_WINDOWS, description="how many days back, one "
                               "window each")] = 14,
) -> DriftHistory:
    """Feature drift day by day: the PSI of the top features (by drift x importance) and of
    the scores, per day, each day monitored as ``GET /models/{name}/monitoring`` does."""
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:
        await run_in_threadpool(serving.production_log.flush)
    settings = app_services(request).settings
    return await run_in_threadpool(lambda: drift_history(session, settings, model_name, tenant,
                                                         windows=days))
