"""The worker <-> server protocol: what crosses the process boundary, typed.

- :mod:`~modelyard.protocol.events`: :class:`WorkerSpec` (what to run) and the events a worker
  reports (started, steps, log lines, finished, errored; a pack's idle and end; a fleet plan's
  tenants ready).
- :mod:`~modelyard.protocol.results`: what a job ends with (:class:`JobResult`,
  :class:`FleetPlan`, :class:`ExceptionInfo` with its :class:`FailureKind`).
- :mod:`~modelyard.protocol.steps`: a pipeline step run as a job (:class:`StepJob`) and what it
  ends with (:class:`StepResult`).
- :mod:`~modelyard.protocol.codec`: the same records as JSON, for backends that pass them
  through files (Kubernetes).

Both sides import this package and nothing of each other: ``runtime`` (the worker) produces
these records, ``executors`` relay them, ``jobs`` (the dispatcher) stores them. It imports only
the standard library.
"""

from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    LogLines,
    PackEnded,
    PackIdle,
    StepFinished,
    StepStarted,
    TenantsReady,
    WorkerEvent,
    WorkerSpec,
    WorkerStarted,
)
from modelyard.protocol.results import (
    ExceptionInfo,
    FailureKind,
    FleetPlan,
    FleetRole,
    JobResult,
    ModelMeta,
    TenantPlan,
    failure,
)
from modelyard.protocol.steps import StepJob, StepResult

__all__ = [
    "ExceptionInfo",
    "FailureKind",
    "FleetPlan",
    "FleetRole",
    "JobErrored",
    "JobFinished",
    "JobResult",
    "LogLines",
    "ModelMeta",
    "PackEnded",
    "PackIdle",
    "StepFinished",
    "StepJob",
    "StepResult",
    "StepStarted",
    "TenantPlan",
    "TenantsReady",
    "WorkerEvent",
    "WorkerSpec",
    "WorkerStarted",
    "failure",
]
