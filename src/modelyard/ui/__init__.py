"""The web UI: server-rendered pages under ``/ui`` on the same server and auth as the API.

Pages are Jinja2 templates rendered from the same service and store functions the JSON routes
call (the UI has no queries of its own); htmx swaps fragments for live updates and actions, and
uPlot draws the charts. Both are vendored under ``static/`` with their licences
(``static/LICENSES.md``), so the UI works offline and ``pip install`` needs no Node build.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from modelyard.api.browser import STATIC_PREFIX
from modelyard.ui import (
    compare,
    experiments,
    fleets,
    job,
    jobs,
    login,
    models,
    monitoring,
    pipelines,
    shadow,
)
from modelyard.ui.render import STATIC_DIR

HOME = "/ui/jobs"


def add_ui(app: FastAPI) -> None:
    """Mount the UI's pages and assets on ``app``, and send ``/`` to the jobs page."""
    app.mount(STATIC_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(login.router)
    app.include_router(jobs.router)  # before job's: /ui/jobs/rows is no job's id
    app.include_router(job.router)
    app.include_router(compare.router)
    app.include_router(pipelines.router)
    app.include_router(models.router)
    app.include_router(shadow.router)
    app.include_router(monitoring.router)
    app.include_router(fleets.router)
    app.include_router(experiments.router)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse(HOME, status_code=303)

    @app.get("/ui", include_in_schema=False)
    async def ui_home() -> RedirectResponse:
        return RedirectResponse(HOME, status_code=303)
