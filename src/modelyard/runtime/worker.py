"""Inside the worker: run one train request from data to artefacts.

:func:`run_job` is the whole training contract and knows nothing of where it runs; it reports
progress through a callback. :func:`process_main` is the entry point of a local worker process:
it isolates the job (own process group, log file, optional memory limit, a watchdog that exits
when the server is gone) and sends the events down a pipe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import pickle
import platform
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

import pyarrow.compute as pc

from modelyard.artifacts import ArtifactStore
from modelyard.errors import DataError, WorkflowError
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    PackIdle,
    StepFinished,
    StepStarted,
    WorkerEvent,
    WorkerSpec,
    WorkerStarted,
)
from modelyard.protocol.results import FleetPlan, JobResult, ModelMeta, failure
from modelyard.request.loading import parse_request
from modelyard.runtime import data as datamod
from modelyard.runtime import evaluation, fastpath, filters, fleet
from modelyard.runtime import holdout as holdoutmod
from modelyard.runtime.workflow import Workflow, resolve_workflow, workflow_source

log = logging.getLogger("modelyard.worker")

Report = Callable[[WorkerEvent], None]
_PACKAGES = ("modelyard", "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "xgboost",
             "torch")


class StepFailed(Exception):
    """Carries the step in which the original exception was raised."""

    def __init__(self, step: str, original: BaseException) -> None:
        super().__init__(str(original))
        self.step = step
        self.original = original


class _Steps:
    def __init__(self, job_id: str, report: Report) -> None:
        self.job_id = job_id
        self.report = report
        self.durations: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {}
        started = time.time()
        t0 = time.perf_counter()
        self.report(StepStarted(self.job_id, name, started))
        log.info("step %s: started", name)
        try:
            yield info
        except StepFailed:
            raise
        except BaseException as exc:
            log.error("step %s: failed: %s: %s", name, type(exc).__name__, exc)
            raise StepFailed(name, exc) from exc
        duration = time.perf_counter() - t0
        self.durations[name] = round(duration, 6)
        log.info("step %s: done in %.3fs %s", name, duration, info or "")
        self.report(StepFinished(self.job_id, name, started, duration, info))


def run_job(spec: WorkerSpec, report: Report) -> JobResult | FleetPlan:
    """Run the request in ``spec``: resolve, load, filter, split, train, serialize, evaluate.

    Returns the job's result (model id, metric values, artefact paths, provenance summary).

    Raises:
        StepFailed: wrapping whatever went wrong, with the step it happened in.
    """
    request = parse_request(spec.request)
    steps = _Steps(spec.job_id, report)
    started_at = dt.datetime.now(dt.UTC)
    store = ArtifactStore(spec.artifact_root)

    with steps.step("resolve_workflow") as info:
        cls = resolve_workflow(request.train.workflow_name, spec.workflow_modules)
        source = workflow_source(cls)
        info.update(workflow=request.train.workflow_name, cls=source["class"])
        workflow: Workflow = cls(request)

    with steps.step("load") as info:
        source_data = datamod.resolve_source(request.data.features.path, spec.data_roots)
        dataset = datamod.open_dataset(source_data)
        datamod.check_columns(dataset, request, source_data)
        fingerprint = datamod.fingerprint(source_data, dataset)
        total_rows = fingerprint["total_rows"]
        if total_rows is None:
            total_rows = dataset.count_rows()
        info.update(files=len(source_data.files), rows=total_rows)

    holdout = request.holdout_sampling
    with steps.step("filter") as info:
        expr = filters.build_filter(request.filters, dataset.schema)
        drs = holdout.date_range_sampling if holdout.sampling_function == "DATE_RANGE" else None
        scan_expr = expr
        if drs is not None:
            holdoutmod.date_bound(dataset.schema, drs.date_column)
            end = filters.scalar_for(drs.end_date, dataset.schema.field(drs.date_column), None)
            window = pc.field(drs.date_column) < end
            scan_expr = window if expr is None else expr & window
        table = datamod.scan(dataset, request.columns(), scan_expr,
                             size=fingerprint["total_bytes"])
        if table.num_rows == 0:
            if total_rows == 0:
                raise DataError(
                    f"data.features.path {source_data.display} has no rows; point it at data "
                    "that has some"
                )
            # Without a date window only the filters can have emptied the scan.
            if drs is None or (request.filters and dataset.count_rows(filter=expr) == 0):
                raise DataError(
                    filters.explain_empty_filter(
                        dataset, request.filters, total_rows, source_data.display
                    )
                )
            raise DataError(
                f"no rows before holdout_sampling.date_range_sampling.end_date "
                f"({drs.end_date}) pass the filters; move the date range"
            )
        scanned_rows = table.num_rows
        info.update(rows=scanned_rows, filters=len(request.filters))

    if request.tenants is not None:  # a fleet's plan job: partition, then the children train
        with steps.step("partition") as info:
            fleet_plan = fleet.plan(request, table, store, spec.job_id,
                                    row_counts={"total": total_rows,
                                                "after_filters": scanned_rows})
            qualifying = sum(1 for t in fleet_plan.tenants if t.qualifies)
            info.update(tenants=len(fleet_plan.tenants), qualifying=qualifying,
                        segments=len(fleet_plan.segments))
        return fleet_plan

    with steps.step("split") as info:
        if drs is not None:
            train_t, holdout_t = holdoutmod.split_date_range(
                table, drs.date_column, drs.start_date, drs.end_date
            )
            window = f"[{drs.start_date}, {drs.end_date})"
            if holdout_t.num_rows == 0:
                raise DataError(
                    f"the holdout is empty: no filtered rows have {drs.date_column} in {window} "
                    f"(filtered rows span {holdoutmod.date_span(table, drs.date_column)}); move "
                    "holdout_sampling.date_range_sampling to dates the data covers"
                )
            if train_t.num_rows == 0:
                raise DataError(
                    f"no training rows: no filtered rows have {drs.date_column} before "
                    f"{drs.start_date} (filtered rows span "
                    f"{holdoutmod.date_span(table, drs.date_column)}); move start_date later"
                )
        else:
            rfs = holdout.random_fraction_sampling
            if rfs is None:
                raise DataError("holdout_sampling.random_fraction_sampling is missing")
            train_t, holdout_t = holdoutmod.split_random(table, rfs.fraction, rfs.seed)
            if holdout_t.num_rows == 0 or train_t.num_rows == 0:
                raise DataError(
                    f"a random fraction of {rfs.fraction} of {table.num_rows} filtered rows "
                    "leaves an empty training set or holdout; use more data or another fraction"
                )
        train_df = datamod.to_frame(train_t)
        holdout_df = datamod.to_frame(holdout_t)
        del table, train_t, holdout_t
        task = workflow.task or evaluation.infer_task(train_df[request.train.label])
        evaluation.check_label(train_df, request.train.label, task)
        info.update(train_rows=len(train_df), holdout_rows=len(holdout_df), task=task)

    # With DATE_RANGE, rows at or after end_date are dropped in the scan along with the filters.
    row_counts = {
        "total": total_rows,
        "after_filters": scanned_rows,
        "train": len(train_df),
        "holdout": len(holdout_df),
    }

    # Text artefacts are built on a helper thread, beside the fit and the metrics (their
    # formatting is ~70 ms on a 200k-row holdout, mostly outside the GIL).
    helper = _helper()
    labels_text = helper.submit(evaluation.labels_tsv, holdout_df[request.train.label])

    with steps.step("train") as info:
        model = workflow.train(train_df, holdout_df)
        if model is None:
            raise WorkflowError(
                f"{source['class']}.train returned None; it must return the fitted model"
            )
        info.update(model_type=f"{type(model).__module__}.{type(model).__qualname__}")

    with steps.step("serialize") as info:
        try:
            model_bytes = pickle.dumps(model, protocol=5)
        except Exception as exc:
            raise WorkflowError(
                f"the model returned by train() cannot be pickled ({type(exc).__name__}: {exc}); "
                "return a picklable object, e.g. the fitted estimator rather than a closure"
            ) from exc
        model_id = store.put_bytes(model_bytes)
        info.update(model_id=model_id, bytes=len(model_bytes))

    with steps.step("evaluate") as info:
        # Boosted trees' own category re-encoding swapped for a verified look-up (same scores;
        # the stored bytes above are untouched): 2-3 ms of a small tenant's evaluation.
        fastpath.accelerate(model)
        scores = workflow.predict(model, holdout_df)
        classes = getattr(model, "classes_", None) if task == "multiclass" else None
        scores_text = helper.submit(evaluation.scores_tsv, scores, classes)
        label = holdout_df[request.train.label]
        metrics = evaluation.compute_metrics(task, label, scores, model)
        info.update({k: v for k, v in metrics.items() if isinstance(v, float)})

    by_tenant = None
    tenant_column = spec.fleet.tenant_column if spec.fleet else None
    if spec.fleet and tenant_column and spec.fleet.level in ("global", "segment"):
        with steps.step("score_tenants") as info:
            by_tenant = fleet.per_tenant_metrics(task, holdout_df, request.train.label,
                                                 tenant_column, scores)
            info.update(tenants=len(by_tenant))

    # Artefacts are written as one atomic folder, after everything else succeeded.
    provenance = {
        "job_id": spec.job_id,
        "request_hash": request.request_hash(),
        "request": request.model_dump(mode="json"),
        "workflow": {"name": request.train.workflow_name, **source},
        "packages": _package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "data": fingerprint,
        "row_counts": row_counts,
        "compute_resource": request.compute_resource.value,
        "started_at": started_at.isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "durations_s": steps.durations,
    }
    model_meta = ModelMeta(
        model_id=model_id,
        workflow=request.train.workflow_name,
        workflow_class=source["class"],
        features=list(request.train.classifier_features),
        label=request.train.label,
        task=task,
    )
    paths = store.write_job_files(
        spec.job_id,
        {
            "scores.tsv": scores_text.result(),
            "labels.tsv": labels_text.result(),
            "metrics.json": _json(metrics),
            "provenance.json": _json(provenance),
            "model.json": _json(dataclasses.asdict(model_meta)),
        },
    )
    return JobResult(
        model_id=model_id,
        metrics=metrics,
        evaluation_holdout_data_path=paths["scores.tsv"],
        evaluation_holdout_label_path=paths["labels.tsv"],
        metrics_path=paths["metrics.json"],
        provenance_path=paths["provenance.json"],
        row_counts=row_counts,
        git_commit=source.get("git_commit"),
        workflow_class=source["class"],
        data_digest=fingerprint["digest"],
        model=model_meta,
        by_tenant=by_tenant,
        request_hash=str(provenance["request_hash"]),
    )


_helpers: dict[int, ThreadPoolExecutor] = {}


def _helper() -> ThreadPoolExecutor:
    """This process's artefact-formatting thread, started at its first job: a pack's jobs
    share it (a thread per job cost ~0.5 ms). Keyed by pid: a thread does not survive a fork."""
    pid = os.getpid()
    if pid not in _helpers:
        _helpers.clear()
        _helpers[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelyard-artefacts")
    return _helpers[pid]


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()


@functools.cache
def _package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def execute(spec: WorkerSpec, report: Report) -> None:
    """Run the job and report exactly one terminal event, whatever happens."""
    report(WorkerStarted(spec.job_id, os.getpid(), socket.gethostname()))
    try:
        result = run_job(spec, report)
    except StepFailed as failed:
        report(JobErrored(spec.job_id, failure(exc=failed.original, step=failed.step)))
    except BaseException as exc:  # the request itself, or anything outside a step
        report(JobErrored(spec.job_id, failure(exc=exc)))
    else:
        report(JobFinished(spec.job_id, result))


def process_main(spec: WorkerSpec, conn: Any) -> None:
    """Entry point of a local worker process (forked from the pre-imported fork server)."""
    os.setpgrp()  # cancel kills the whole group, including processes the workflow started
    if spec.memory_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (spec.memory_limit, spec.memory_limit))
    done = threading.Event()
    _watch_server(conn, done)

    report: Report = conn.send
    batched = _Batched(conn.send) if spec.pack else None
    if batched is not None:
        report = batched

    if spec.threads:
        # Jobs share the machine: N concurrent jobs each spinning up every core's worth of
        # OpenMP threads thrash (measured: a 30-iteration boosted fit 20x slower).
        limit_threads(spec.threads)
    try:
        jobs: Sequence[WorkerSpec] = spec.pack or (spec,)
        while jobs:
            for i, one in enumerate(jobs):  # a pack runs its small jobs one after another
                if spec.refill and i == len(jobs) - 1:
                    # Ask for more rather than exit (this process's memory is warm, a new
                    # one's is not: its first job pays ~4,000 page faults, ~100 ms), and ask
                    # now, so the answer is here when the last job ends.
                    report(PackIdle(spec.job_id))
                if one.log_path:
                    _redirect_output(one.log_path)
                execute(one, report)
            if not spec.refill:
                break
            jobs = _next_jobs(conn)
    finally:
        if batched is not None:
            with contextlib.suppress(OSError):
                batched.flush()
        done.set()
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


def _next_jobs(conn: Any) -> Sequence[WorkerSpec]:
    """The server's answer to :class:`PackIdle`: more specs, or none (then the pack ends)."""
    try:
        jobs = conn.recv()
    except (EOFError, OSError):
        return ()
    return tuple(j for j in jobs if isinstance(j, WorkerSpec))


class _Batched:
    """A packed worker's reports, sent in batches.

    Packed jobs are small and report a dozen events within milliseconds; sending each on its
    own made the server apply them one by one. Events wait up to ``MAX_DELAY_S`` (a timer sends
    them then, so a slower job still shows its steps). A job's :class:`WorkerStarted` goes at
    once, with everything before it: so if the process dies, every earlier job's outcome has
    reached the server, and the server knows which job was running and which never started.
    A :class:`PackIdle` goes at once too.
    """

    MAX_DELAY_S = 0.25

    def __init__(self, send: Callable[[Any], None]) -> None:
        self.send = send
        self.waiting: list[WorkerEvent] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._tick, name="modelyard-report-batch", daemon=True).start()

    def __call__(self, event: WorkerEvent) -> None:
        with self.lock:
            self.waiting.append(event)
            if isinstance(event, WorkerStarted | PackIdle):
                self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _tick(self) -> None:
        while True:
            time.sleep(self.MAX_DELAY_S)
            with self.lock:
                try:
                    self._flush()
                except OSError:  # the server is gone; the watchdog ends the process
                    return

    def _flush(self) -> None:
        if self.waiting:
            self.send(self.waiting)
            self.waiting = []


_controller: Any = None


def thread_controller() -> Any:
    """threadpoolctl's view of the loaded native libraries, scanned once per process.

    The fork server calls this before forking, so workers reuse the scan (about 18 ms each).
    """
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def limit_threads(n: int) -> None:
    """At most ``n`` threads in each native thread pool (OpenMP, BLAS) of this process.

    Only pools set to another count are changed. Setting OpenBLAS's count, even to the value it
    has, starts its threads in a newly forked process, and they spin-wait for about 0.1 s on
    the cores the job needs: a tiny job took 130 ms instead of 55 (measured). The fork server
    sets the usual count before it forks, so most workers change nothing.
    """
    for lib in thread_controller().lib_controllers:
        if lib.num_threads != n:
            lib.set_num_threads(n)


_prepared: list[Any] = []  # (stdout, stderr, logging handlers) as prepare_output left them


def prepare_output() -> None:
    """Line-buffered text streams on fds 1 and 2, and logging onto stderr, once per process.

    Pointing a job's output at its log is then an open and two ``dup2`` calls: a pack does
    that for each job, and a spare worker prepares before its job comes (building the streams
    and the logging set-up cost ~1 ms in a fresh fork, measured).
    """
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    _prepared[:] = [sys.stdout, sys.stderr, list(logging.root.handlers)]


def _redirect_output(path: str) -> None:
    """Send fds 1 and 2 (so C libraries and subprocesses too) and logging to the job's log."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):  # a job may have closed it
            stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # The prepared streams write to fds 1 and 2, now the log; prepare again only if an
    # earlier job of this process replaced or closed them, or changed the logging set-up.
    if (not _prepared or sys.stdout is not _prepared[0] or sys.stderr is not _prepared[1]
            or sys.stdout.closed or sys.stderr.closed
            or logging.root.handlers != _prepared[2] or logging.root.level != logging.INFO):
        prepare_output()


def _watch_server(conn: Any, done: threading.Event) -> None:
    """Exit when the server is gone: a worker never outlives its server.

    The server holds the only other end of our event socket; when it dies, polling our end
    reports POLLHUP. (The parent process is the fork server, which outlives a killed server
    for as long as any worker holds its "alive" pipe, so watching the parent pid is not enough.)
    """
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLERR | select.POLLHUP)

    def watch() -> None:
        while not done.is_set():
            if poller.poll(500) and not done.is_set():
                os._exit(70)

    threading.Thread(target=watch, name="modelyard-server-watch", daemon=True).start()
