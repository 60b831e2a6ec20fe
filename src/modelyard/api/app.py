"""``create_app(settings)``: the FastAPI application, its services and its error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import sqlalchemy.exc
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from modelyard._version import __version__
from modelyard.api.auth import AuthMiddleware, document_auth
from modelyard.api.browser import is_ui
from modelyard.api.deps import Services, require_token
from modelyard.api.docs import add_docs
from modelyard.api.limits import BodyLimitMiddleware
from modelyard.api.metrics import make_registry
from modelyard.api.metrics import router as metrics_router
from modelyard.api.notify import JobNotifier
from modelyard.api.predict_path import PredictPath
from modelyard.api.redact import Redactor, redactor_for
from modelyard.api.routes import (
    experiments,
    health,
    jobs,
    models,
    monitoring,
    pipelines,
    tokens,
    train,
    triggers,
)
from modelyard.api.schemas import error_responses
from modelyard.errors import ModelyardError
from modelyard.executors import make_executor
from modelyard.experiments.controller import Controller
from modelyard.jobs.dispatcher import Dispatcher
from modelyard.jobs.lease import Lease
from modelyard.jobs.metrics import JobMetrics
from modelyard.jobs.servers import ServerIdentity
from modelyard.pipelines.runner import PipelineRunner
from modelyard.request.loading import describe_errors, summarize_errors
from modelyard.serving import routes as serving_routes
from modelyard.serving.service import ServingService
from modelyard.settings import Settings
from modelyard.sql import make_engine, session_factory, upgrade
from modelyard.triggers.scheduler import Scheduler
from modelyard.ui import add_ui
from modelyard.ui.render import error_page

log = logging.getLogger("modelyard.api")


def create_app(settings: Settings | None = None, *, run_jobs: bool = True) -> FastAPI:
    """Build the API; the job store, executor and dispatcher start with the app and stop with it.

    ``run_jobs=False`` gives a serving replica (``modelyard serve``): predict, labels, the
    registry and health, with no executor and no train or job routes.
    """
    settings = settings or Settings.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        engine = make_engine(settings.db_url)
        upgrade(engine)
        sessions = session_factory(engine)
        notifier = JobNotifier()
        notifier.bind(asyncio.get_running_loop())
        # Made at each start, so an app started again registers its metrics afresh.
        app.state.metrics = registry = make_registry(sessions, store=run_jobs)
        dispatcher = runner = lease = None
        loops: list[Scheduler | Controller] = []
        serving = ServingService(settings, sessions, registry)
        if run_jobs:
            dispatcher, runner, lease = _start_jobs(settings, sessions, notifier, registry)
            loops = _start_loops(settings, sessions, runner, serving)
        app.state.services = Services(settings, sessions, dispatcher, notifier, runner)
        serving.start()
        app.state.serving = serving
        # What startup imported and built lives as long as the process: kept out of the
        # collector's full passes, which would otherwise walk it all, holding the GIL, every
        # time enough requests' objects outlived the young generations.
        gc.collect()
        gc.freeze()
        log.info("modelyard %s: home %s, db %s, %s%s", __version__, settings.home,
                 engine.url.render_as_string(hide_password=True),
                 f"executor {settings.executor} x{settings.concurrency}" if run_jobs
                 else "serving only", ", scheduler on" if settings.scheduler and run_jobs else "")
        try:
            yield
        finally:
            await serving.drain()
            serving.stop()
            for loop in loops:
                loop.stop()
            if runner is not None:
                runner.stop()
            if dispatcher is not None:
                dispatcher.stop()
            if lease is not None:  # after its workers stopped: what it leaves is taken over
                lease.stop()
            engine.dispose()

    app = FastAPI(
        title="Modelyard",
        version=__version__,
        description="Self-hosted model training service: POST a train request, get a model.",
        lifespan=lifespan,
        docs_url=None,  # add_docs serves /docs and /redoc with the package's own assets
        redoc_url=None,
        debug=settings.debug,  # a 500 answers with its traceback only under --debug
    )
    app.state.redactor = redactor_for(settings)
    add_docs(app)
    _include_routers(app, run_jobs)
    app.add_exception_handler(ModelyardError, _modelyard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sqlalchemy.exc.DataError, _refused_by_database)
    app.add_middleware(PredictPath)  # innermost: inside the body limits and auth
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, setting="--max-body-bytes",
        by_prefix=(("/predict/", settings.max_predict_body_bytes, "--max-predict-body-bytes"),))
    app.add_middleware(AuthMiddleware)  # outermost: no token, nothing of the body is read
    document_auth(app)
    return app


def _include_routers(app: FastAPI, run_jobs: bool) -> None:
    """The API's routers; a training server also serves the web UI (a replica serves predict)."""
    app.include_router(health.router)
    app.include_router(metrics_router)
    if run_jobs:
        add_ui(app)
        app.include_router(train.router)
        app.include_router(jobs.router)
        app.include_router(pipelines.router)
        app.include_router(triggers.router)
    app.include_router(models.router)
    app.include_router(experiments.router)
    app.include_router(monitoring.router)
    app.include_router(tokens.router)
    app.include_router(tokens.whoami_router)
    # Serving's router leaves authentication to the app that mounts it (serving imports no API).
    app.include_router(serving_routes.router, dependencies=[Depends(require_token)],
                       responses=error_responses(400, 404, 413, 422, 503))


def _start_jobs(settings: Settings, sessions: sessionmaker[Session], notifier: JobNotifier,
                registry: CollectorRegistry) -> tuple[Dispatcher, PipelineRunner, Lease]:
    """Take this server's lease on the job store (SQLite: refused while another server runs
    on it, before any worker starts), then start the executor, the dispatcher and the pipeline
    runner, which the dispatcher wakes whenever a job ends (a pipeline step may be done)."""
    me = ServerIdentity.new()
    lease = Lease(settings, sessions, me)
    lease.start()
    executor = make_executor(settings)
    executor.warm_up()
    runners: list[PipelineRunner] = []

    def on_change(changes: Mapping[str, bool]) -> None:
        notifier.notify_many(changes)
        if runners and any(changes.values()):
            runners[0].wake()

    dispatcher = Dispatcher(settings, sessions, executor, on_change=on_change,
                            metrics=JobMetrics(registry), server_id=me.id)
    runner = PipelineRunner(settings, sessions, dispatcher.wake)
    runners.append(runner)
    lease.on_failed = lambda jobs: on_change(dict.fromkeys(jobs, True))

    def renamed(server_id: str) -> None:  # a new lease, after this server was taken over
        dispatcher.server_id = server_id

    lease.on_new_id = renamed
    dispatcher.start()
    runner.start()
    return dispatcher, runner, lease


def _start_loops(settings: Settings, sessions: sessionmaker[Session], runner: PipelineRunner,
                 serving: ServingService) -> list[Scheduler | Controller]:
    """The loop services beside the dispatcher: the scheduler (unless --no-scheduler) and the
    experiment controller, whose changes this server's serving splits by at once."""
    loops: list[Scheduler | Controller] = []
    if settings.scheduler:
        loops.append(Scheduler(settings, sessions, on_run_started=runner.wake))
    loops.append(Controller(sessions, settings.experiment_interval,
                            on_change=serving.experiments.refresh,
                            retention_days=settings.experiment_retention_days))
    for loop in loops:
        loop.start()
    return loops


async def _modelyard_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    redactor: Redactor = request.app.state.redactor
    if _wants_page(request):
        return error_page(request, status, type(exc).__name__, redactor.text(str(exc)))
    return JSONResponse({"error": type(exc).__name__, "message": redactor.text(str(exc))},
                        status_code=status, headers=headers)


async def _refused_by_database(request: Request, exc: Exception) -> JSONResponse:
    # A value the request carried that the database cannot hold or compare: a NUL character
    # in text (PostgreSQL), a number past its column's range, a text longer than its column.
    # The route's own checks refuse these first; this keeps any it misses a 422, not a 500.
    log.info("the database refused a value of %s %s: %s", request.method, request.url.path,
             getattr(exc, "orig", exc))
    return JSONResponse({"error": "RequestError", "message": (
        "a value of the request cannot be stored or compared by the database (a NUL "
        "character, a number out of range or a text too long); check the request's values")},
        status_code=422)


def _wants_page(request: Request) -> bool:
    """A browser loading a UI page gets an HTML error; htmx's requests and the API get JSON."""
    return is_ui(request.url.path) and "hx-request" not in request.headers


async def _validation_error(request: Request, exc: Exception) -> Response:
    # Summarised: the first errors' loc, msg and type, never the input they were about.
    errors: Any = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail, more = summarize_errors(errors)
    what = "train request" if request.url.path.endswith("/train") else "request"
    if _wants_page(request):
        return error_page(request, 422, "Bad request", describe_errors(errors, what))
    return JSONResponse(
        {"error": "RequestError", "message": describe_errors(errors, what),
         "detail": jsonable_encoder(detail), "more_errors": more},
        status_code=422,
    )
