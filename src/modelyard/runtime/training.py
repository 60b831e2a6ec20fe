"""The training contract, inside the worker: one train request from data to artefacts.

:func:`run_job` reads top-down as the steps a job reports: find the workflow, load the data,
filter it, then either partition it (a fleet's plan job) or split, train, serialize, evaluate and
(a fleet's global or segment model) score the tenants. The job's files are written last, as one
folder, once every step succeeded. Each step is a function below that takes and returns typed
records. :func:`execute` runs a job and reports exactly one terminal event, whatever happens.

Nothing here knows where it runs: a local worker process
(:mod:`modelyard.executors.local_worker`), a Ray task and a Kubernetes pod all call
:func:`execute` with a callback for the events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pickle
import socket
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from modelyard.artifacts import ArtifactStore
from modelyard.errors import DataError, WorkflowError
from modelyard.monitoring.importance import importances
from modelyard.monitoring.profile import Profile, build_profile, null_count
from modelyard.protocol.events import (
    Champion,
    JobErrored,
    JobFinished,
    TenantsReady,
    WorkerSpec,
    WorkerStarted,
)
from modelyard.protocol.results import FleetPlan, JobResult, TenantPlan, failure
from modelyard.protocol.steps import StepResult
from modelyard.request.loading import parse_request
from modelyard.request.models import TrainRequest
from modelyard.runtime import (
    champion,
    data,
    evaluation,
    fastpath,
    filters,
    fleet,
    holdout,
    job_files,
)
from modelyard.runtime.pipeline_steps import run_step
from modelyard.runtime.snapshot import replay_workflow, take_snapshot
from modelyard.runtime.steps import Report, StepFailed, StepInfo, Steps
from modelyard.runtime.workflow import Task, Workflow, resolve_workflow, workflow_source

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """What every step may read: the spec, its parsed request, and the artefact store."""

    spec: WorkerSpec
    request: TrainRequest
    store: ArtifactStore
    started_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The request's workflow, configured, and where its code came from."""

    workflow: Workflow
    source: dict[str, Any]  # workflow_source(): class, file, sha256, git commit; its snapshot

    @property
    def class_name(self) -> str:
        return str(self.source["class"])


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The request's data, opened but not read."""

    source: data.Source
    dataset: ds.Dataset
    fingerprint: dict[str, Any]  # data.fingerprint(): the provenance's record of what was read
    total_rows: int


@dataclasses.dataclass(frozen=True)
class Frames:
    """The split rows as the workflow sees them, and the task their label sets."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    task: Task
    row_counts: dict[str, int]  # total, after_filters, train, holdout
    missing_values: list[str]  # features with nulls or NaN in either frame (serving's schema)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The holdout's scores and metrics; its scores.tsv, formatted on the helper thread."""

    scores: np.ndarray[Any, Any]
    metrics: dict[str, Any]
    scores_tsv: Future[bytes]
    evidence: champion.Evidence  # what promotion rules decide on (runtime.champion)
    profile: Profile  # what monitoring compares production traffic with


def run_job(spec: WorkerSpec, report: Report) -> JobResult | FleetPlan:
    """Run the request in ``spec``, step by step, reporting each step through ``report``.

    Returns the job's result (model id, metric values, artefact paths, provenance summary), or
    for a fleet's plan job the fleet's plan.

    Raises:
        StepFailed: wrapping whatever went wrong in a step, with the step's name.
    """
    job = TrainingJob(spec, parse_request(spec.request), ArtifactStore(spec.artifact_root),
                      dt.datetime.now(dt.UTC))
    steps = Steps(spec.job_id, report)
    resolved = steps.run("resolve_workflow", find_workflow, job)
    loaded = steps.run("load", load, job)
    table = steps.run("filter", filter_rows, job, loaded)
    if job.request.tenants is not None:  # a fleet's plan job: its children train
        return steps.run("partition", partition, job, loaded, table, report)
    frames = steps.run("split", split, job, resolved, loaded, table)
    del table  # from here on only the frames
    # The text artefacts are formatted on a helper thread, beside the fit and the metrics.
    labels_tsv = _helper().submit(evaluation.labels_tsv, frames.holdout[job.request.train.label])
    model = steps.run("train", train, resolved, frames)
    model_id = steps.run("serialize", serialize, job, model)
    evaluated = steps.run("evaluate", evaluate, job, resolved, model, frames)
    evidence = evaluated.evidence
    if spec.champion is not None:
        evidence = steps.run("compare", compare, job, frames, evaluated, spec.champion)
    tenant_column = _scored_tenant_column(spec)
    by_tenant = (steps.run("score_tenants", score_tenants, job, frames, evaluated, tenant_column)
                 if tenant_column else None)
    return job_files.write(job.store, job_files.Outcome(
        job_id=spec.job_id, request=job.request, workflow_source=resolved.source,
        data=loaded.fingerprint, row_counts=frames.row_counts, model_id=model_id,
        task=frames.task, missing_values=frames.missing_values, metrics=evaluated.metrics,
        scores_tsv=evaluated.scores_tsv.result(), labels_tsv=labels_tsv.result(),
        by_tenant=by_tenant, evidence=evidence.to_json(), profile=evaluated.profile,
        started_at=job.started_at, durations_s=steps.durations,
    ))


def find_workflow(info: StepInfo, job: TrainingJob) -> Resolved:
    """The workflow class the request names, configured with the request; its code snapshot
    taken (:mod:`modelyard.runtime.snapshot`) for serving and exports to load it from."""
    name = job.request.train.workflow_name
    allowed = (job.spec.workflow_modules, job.spec.workflow_packages)
    if job.spec.replay_of is not None:  # the original's code, not the file as it is now
        cls, source = replay_workflow(job.store, job.spec.workflow_snapshot, name, *allowed)
        info.update(replays=job.spec.replay_of)
    else:
        cls = resolve_workflow(name, *allowed)
        snapshot = take_snapshot(cls, job.store)
        source = {**workflow_source(cls), "snapshot": snapshot.to_json() if snapshot else None}
    info.update(workflow=name, cls=source["class"])
    return Resolved(cls(job.request), source)


def load(info: StepInfo, job: TrainingJob) -> Loaded:
    """Find the request's files inside the data roots, open them, check its columns exist."""
    source = data.resolve_source(job.request.data.features.path, job.spec.data_roots)
    dataset = data.open_dataset(source)
    data.check_columns(dataset, job.request, source)
    fingerprint = data.fingerprint(source, dataset)
    total_rows = fingerprint["total_rows"]
    if total_rows is None:  # a file without a parquet footer to read the count from
        total_rows = dataset.count_rows()
    info.update(files=len(source.files), rows=total_rows)
    return Loaded(source, dataset, fingerprint, total_rows)


def filter_rows(info: StepInfo, job: TrainingJob, loaded: Loaded) -> pa.Table:
    """Read the needed columns of the rows that pass the filters and, with a DATE_RANGE
    holdout, lie before its end; no rows is an error that says what emptied the scan."""
    request, dataset = job.request, loaded.dataset
    expr = filters.build_filter(request.filters, dataset.schema)
    scan_expr = expr
    window = holdout.scan_window(request.holdout_sampling, dataset.schema)
    if window is not None:
        scan_expr = window if expr is None else expr & window
    table = data.scan(dataset, request.columns(), scan_expr,
                      size=loaded.fingerprint["total_bytes"])
    if table.num_rows == 0:
        raise DataError(_why_no_rows(request, loaded, expr))
    info.update(rows=table.num_rows, filters=len(request.filters))
    return table


def _why_no_rows(request: TrainRequest, loaded: Loaded, expr: pc.Expression | None) -> str:
    if loaded.total_rows == 0:
        return (f"data.features.path {loaded.source.display} has no rows; point it at data "
                "that has some")
    drs = holdout.date_range(request.holdout_sampling)
    # Without a date window only the filters can have emptied the scan.
    if drs is None or (request.filters and loaded.dataset.count_rows(filter=expr) == 0):
        return filters.explain_empty_filter(loaded.dataset, request.filters, loaded.total_rows,
                                            loaded.source.display)
    return (f"no rows before holdout_sampling.date_range_sampling.end_date ({drs.end_date}) "
            "pass the filters; move the date range")


def partition(info: StepInfo, job: TrainingJob, loaded: Loaded, table: pa.Table,
              report: Report) -> FleetPlan:
    """A fleet's plan: each qualifying tenant's rows written as its own partition, each chunk
    of them reported as :class:`TenantsReady` once written, so their models start at once."""

    def ready(tenants: list[TenantPlan], segments: list[str]) -> None:
        report(TenantsReady(job.spec.job_id, tuple(tenants), tuple(segments)))

    plan = fleet.plan(job.request, table, job.store, job.spec.job_id,
                      row_counts={"total": loaded.total_rows, "after_filters": table.num_rows},
                      ready=ready)
    info.update(tenants=len(plan.tenants), qualifying=sum(1 for t in plan.tenants if t.qualifies),
                segments=len(plan.segments))
    return plan


def split(info: StepInfo, job: TrainingJob, resolved: Resolved, loaded: Loaded,
          table: pa.Table) -> Frames:
    """Training and holdout frames; the task (the workflow's, or the label's) and its label
    checked on the training rows."""
    label = job.request.train.label
    train_t, holdout_t = holdout.split(table, job.request.holdout_sampling)
    train_df, holdout_df = data.to_frame(train_t), data.to_frame(holdout_t)
    del train_t, holdout_t
    task = resolved.workflow.task or evaluation.infer_task(train_df[label])
    evaluation.check_label(train_df, label, task)
    info.update(train_rows=len(train_df), holdout_rows=len(holdout_df), task=task)
    # With DATE_RANGE, rows at or after end_date were dropped in the scan along with the filters.
    row_counts = {"total": loaded.total_rows, "after_filters": table.num_rows,
                  "train": len(train_df), "holdout": len(holdout_df)}
    missing = [c for c in job.request.train.classifier_features
               if null_count(train_df[c]) or null_count(holdout_df[c])]
    return Frames(train_df, holdout_df, task, row_counts, missing)


def train(info: StepInfo, resolved: Resolved, frames: Frames) -> Any:
    """The workflow's ``train`` on the two frames; it must return the fitted model."""
    model = resolved.workflow.train(frames.train, frames.holdout)
    if model is None:
        raise WorkflowError(
            f"{resolved.class_name}.train returned None; it must return the fitted model")
    info.update(model_type=f"{type(model).__module__}.{type(model).__qualname__}")
    return model


def serialize(info: StepInfo, job: TrainingJob, model: Any) -> str:
    """The model pickled into the content-addressed store; returns its id (sha256 of bytes)."""
    try:
        model_bytes = pickle.dumps(model, protocol=5)
    except Exception as exc:
        raise WorkflowError(
            f"the model returned by train() cannot be pickled ({type(exc).__name__}: {exc}); "
            "return a picklable object, e.g. the fitted estimator rather than a closure"
        ) from exc
    model_id = job.store.put_bytes(model_bytes)
    info.update(model_id=model_id, bytes=len(model_bytes))
    return model_id


def evaluate(info: StepInfo, job: TrainingJob, resolved: Resolved, model: Any,
             frames: Frames) -> Evaluation:
    """The workflow's ``predict`` on the holdout, and the task's metrics of its scores."""
    # Boosted trees' own category re-encoding is swapped for a verified look-up: the same
    # scores, sooner. The bytes stored in the step before are untouched.
    fastpath.accelerate(model)
    scores, seconds = champion.timed_predict(resolved.workflow.predict, model, frames.holdout)
    classes = getattr(model, "classes_", None) if frames.task == "multiclass" else None
    scores_tsv = _helper().submit(evaluation.scores_tsv, scores, classes)
    label = frames.holdout[job.request.train.label]
    metrics = evaluation.compute_metrics(frames.task, label, scores, model)
    info.update({k: v for k, v in metrics.items() if isinstance(v, float)})
    return Evaluation(scores, metrics, scores_tsv,
                      champion.measure(frames.task, label, model, seconds),
                      profile(job, resolved, model, frames, scores))


def profile(job: TrainingJob, resolved: Resolved, model: Any, frames: Frames,
            scores: np.ndarray[Any, Any]) -> Profile:
    """The reference profile of the training rows and holdout scores (monitoring's)."""
    features = job.request.train.classifier_features
    weights, method = importances(model, resolved.workflow.predict, frames.holdout, features)
    return build_profile(frames.train, features, scores, importance=weights,
                         importance_method=method, date_column=job.request.data.date_column)


def compare(info: StepInfo, job: TrainingJob, frames: Frames, evaluated: Evaluation,
            production: Champion) -> champion.Evidence:
    """Production of the same (model, tenant) scored on the candidate's holdout rows."""
    evidence = champion.against_production(
        evaluated.evidence, production, job.store,
        (job.spec.workflow_modules, job.spec.workflow_packages), frames.task, frames.holdout,
        frames.holdout[job.request.train.label], evaluated.scores)
    info.update(production_version=production.version,
                compared=evidence.champion is not None)
    return evidence


def score_tenants(info: StepInfo, job: TrainingJob, frames: Frames, evaluated: Evaluation,
                  tenant_column: str) -> dict[str, float | None]:
    """A fleet's global or segment model: its graduation metric on each tenant's holdout rows."""
    by_tenant = fleet.per_tenant_metrics(frames.task, frames.holdout, job.request.train.label,
                                         tenant_column, evaluated.scores)
    info.update(tenants=len(by_tenant))
    return by_tenant


def _scored_tenant_column(spec: WorkerSpec) -> str | None:
    """The tenant column a fleet's global or segment model is scored per tenant on, if any."""
    role = spec.fleet
    if role is None or role.level not in ("global", "segment"):
        return None
    return role.tenant_column or None


_helpers: dict[int, ThreadPoolExecutor] = {}


def _helper() -> ThreadPoolExecutor:
    """This process's artefact-formatting thread, started at its first job and shared by a
    pack's jobs rather than started per job. Keyed by pid: a thread does not survive a fork."""
    pid = os.getpid()
    if pid not in _helpers:
        _helpers.clear()
        _helpers[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelyard-artefacts")
    return _helpers[pid]


def execute(spec: WorkerSpec, report: Report) -> None:
    """Run the job and report exactly one terminal event, whatever happens."""
    report(WorkerStarted(spec.job_id, os.getpid(), socket.gethostname()))
    result: JobResult | FleetPlan | StepResult
    try:
        # A pipeline step runs as a job too, on the same executors, with the same events.
        result = run_job(spec, report) if spec.step is None else run_step(spec, report)
    except StepFailed as failed:
        report(JobErrored(spec.job_id, failure(exc=failed.original, step=failed.step,
                                               exitcode=getattr(failed.original, "exitcode",
                                                                None))))
    except BaseException as exc:  # the request itself, or anything outside a step
        report(JobErrored(spec.job_id, failure(exc=exc)))
    else:
        report(JobFinished(spec.job_id, result))
