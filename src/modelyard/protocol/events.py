"""What a worker tells its executor: plain, picklable records, the same on every backend.

This package (:mod:`modelyard.protocol`) is the one both sides of the process boundary import:
the worker (``runtime``), the executors and the dispatcher (``jobs``). It imports nothing else
of Modelyard, so the server never loads the training runtime to read a worker's events.

The worker never touches the job store. It reports a :class:`WorkerStarted`, then a
:class:`StepStarted`/:class:`StepFinished` pair per step, and ends with exactly one
:class:`JobFinished` or :class:`JobErrored`. An executor that loses its worker (killed, crashed,
out of memory) reports a :class:`JobErrored` on its behalf. An executor whose worker cannot write
the job's log file itself (a remote node) sends the worker's output as :class:`LogLines`.

A fleet's plan job reports each chunk of tenants whose partitions are written as
:class:`TenantsReady`, before its :class:`JobFinished`, so their models can start while it writes
the rest; the final plan holds every tenant again.

A refillable pack (local executor) says :class:`PackIdle` as its last job starts and receives the
next ones, or none, on the same socket; its executor says :class:`PackEnded` when it is gone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

from modelyard.protocol.results import (
    ExceptionInfo,
    FailureKind,
    FleetPlan,
    FleetRole,
    JobResult,
    TenantPlan,
    failure,
)
from modelyard.protocol.steps import StepJob, StepResult


@dataclasses.dataclass(frozen=True)
class Champion:
    """The production version of a job's (model, tenant) when the job was started: the worker
    scores it on the candidate's holdout rows beside the candidate (champion/challenger)."""

    version_id: int  # the registry row, so a rule can tell whether production changed since
    version: int
    model_id: str
    job_id: str | None


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to run one job; no handle to the server."""

    job_id: str
    request: dict[str, Any]
    data_roots: tuple[str, ...]
    artifact_root: str
    workflow_modules: tuple[str, ...] = ()
    # Packages a request's dotted workflow path may name (the operator's --workflow-package).
    workflow_packages: tuple[str, ...] = ()
    log_path: str | None = None
    memory_limit: int | None = None
    # Native threads (OpenMP, BLAS) the job may use; None leaves the libraries' defaults.
    threads: int | None = None
    # A fleet child: its tenant, level and what it scores for graduation (see runtime.fleet).
    fleet: FleetRole | None = None
    # Several small jobs run one after another in one worker (fleets pack small tenants).
    pack: tuple[WorkerSpec, ...] = ()
    # A pack that asks for more (:class:`PackIdle`) before its jobs are done, instead of exiting;
    # only where the executor can answer (the local one, over the worker's socket).
    refill: bool = False
    # Production of the same (model, tenant), if any: scored on the same holdout rows.
    champion: Champion | None = None
    # A replay: the job it reruns, and that job's workflow code snapshot (provenance's
    # workflow.snapshot; None if it had none), which the replay trains with.
    replay_of: str | None = None
    workflow_snapshot: dict[str, Any] | None = None
    # A pipeline step run as a job (kind "step"): it runs this instead of a train request.
    step: StepJob | None = None
    # Where a command step's program may come from, and the images a step may run in (the
    # operator's --step-commands and --step-images): the worker checks again what the server did.
    step_commands: tuple[str, ...] = ()
    step_images: tuple[str, ...] = ()

    def job_ids(self) -> list[str]:
        """The jobs this worker reports on: its own, or every packed one."""
        return [s.job_id for s in self.pack] if self.pack else [self.job_id]


@dataclasses.dataclass(frozen=True)
class WorkerStarted:
    job_id: str
    pid: int
    host: str


@dataclasses.dataclass(frozen=True)
class StepStarted:
    job_id: str
    name: str
    started_at: float


@dataclasses.dataclass(frozen=True)
class StepFinished:
    job_id: str
    name: str
    started_at: float
    duration_s: float
    info: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class JobFinished:
    """The job succeeded: a trained model, (a fleet's plan job) the fleet's plan, or (a
    pipeline step) the step's outputs."""

    job_id: str
    result: JobResult | FleetPlan | StepResult


@dataclasses.dataclass(frozen=True)
class TenantsReady:
    """A fleet's plan job (``job_id``) wrote these qualifying tenants' partitions: their models
    may start now. ``segments``: the fleet's segments, known before any partition is written.
    Optional to relay: the plan's :class:`JobFinished` names every tenant again."""

    job_id: str
    tenants: tuple[TenantPlan, ...]
    segments: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class JobErrored:
    job_id: str
    exception_info: ExceptionInfo


@dataclasses.dataclass(frozen=True)
class LogLines:
    """Output of a remote worker, to append to the job's log as it is (whole lines)."""

    job_id: str
    text: str


def lost_job_errors(lost: Sequence[str], started: Collection[str], crash: ExceptionInfo, *,
                    packed: bool) -> list[JobErrored]:
    """The terminal events an executor reports for jobs its worker left without one.

    ``crash`` goes to the job(s) it was running; in a pack (``packed``), the jobs the worker
    never started (no :class:`WorkerStarted` came) are reported ``not_started`` instead:
    they did not fail on their own account, and a fleet queues them again.
    """
    crashed = [j for j in lost if j in started or not packed]
    where = f" while it ran job {', '.join(crashed)}" if crashed else ""
    not_started = failure(FailureKind.not_started,
                          f"not run: the worker it was packed into died{where} before reaching "
                          "it (a fleet queues such a tenant again, once)",
                          exitcode=crash.exitcode)
    return [JobErrored(j, crash if j in crashed else not_started) for j in lost]


@dataclasses.dataclass(frozen=True)
class PackIdle:
    """A refillable pack asks for its next jobs (``job_id`` is the pack's id): sent as its
    last job starts, answered by exactly one list of specs (empty: the pack ends)."""

    job_id: str


@dataclasses.dataclass(frozen=True)
class PackEnded:
    """The executor's word that a refillable pack's worker is gone: it takes no more jobs."""

    job_id: str


WorkerEvent = (WorkerStarted | StepStarted | StepFinished | LogLines | JobFinished | JobErrored
               | PackIdle | PackEnded | TenantsReady)
