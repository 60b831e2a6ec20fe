"""What a job's ``exception_info`` says when its Ray task or pack ended without reporting
the job's end: Ray's exceptions translated, each with the next step."""

from __future__ import annotations

import ray.exceptions

from modelyard.protocol.results import ExceptionInfo, FailureKind, failure


def lost_record(exc: BaseException) -> ExceptionInfo:
    """``exception_info`` for a task that ended without returning its terminal event."""
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        kind, message = FailureKind.cancelled, "the Ray task was cancelled"
    elif isinstance(exc, ray.exceptions.OutOfMemoryError):
        kind, message = FailureKind.out_of_memory, (
            "Ray's memory monitor killed the job's worker because its node ran out of memory; "
            "use less data, or reserve more memory (compute_resource: HIGH_MEMORY or "
            f"resources.memory_gb). Ray said: {exc}")
    elif isinstance(exc, ray.exceptions.NodeDiedError | ray.exceptions.LocalRayletDiedError):
        kind, message = FailureKind.worker_lost, (
            f"the Ray node running the job died or became unreachable; resubmit the request. "
            f"Ray said: {exc}")
    elif isinstance(exc, ray.exceptions.WorkerCrashedError):
        kind, message = FailureKind.worker_crashed, (
            "the Ray worker process died before the job finished (killed by a signal, out of "
            "memory, or a crash in native code); see the job's log and the node's Ray logs "
            "(python-core-worker-*.log)")
    elif isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        kind, message = FailureKind.protocol_error, (
            f"the Ray task failed outside the job: {type(cause).__name__}: {cause}")
    else:
        kind, message = FailureKind.worker_lost, (
            f"the Ray task failed: {type(exc).__name__}: {exc}")
    return failure(kind, message)


def pack_lost_record(exc: BaseException, host: str | None) -> ExceptionInfo:
    """``exception_info`` for the job a pack's task was running when its worker died
    (``host``: the ``worker_host`` its last job reported; None if it never started one)."""
    said = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return failure(FailureKind.cancelled, "the Ray task of the job's pack was cancelled")
    where = f"on {host}" if host else "before it started a job"
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        kind = FailureKind.out_of_memory
    elif isinstance(exc, ray.exceptions.NodeDiedError | ray.exceptions.LocalRayletDiedError):
        kind = FailureKind.worker_lost
    else:
        kind = FailureKind.worker_crashed
    return failure(kind, (
        f"the Ray worker running the job's pack {where} died before the job finished (its "
        "process was killed or ran out of memory, native code crashed, or the node was lost); "
        "the pack's tenants it had not started are queued again. See that node's Ray logs "
        f"(python-core-worker-*.log). Ray said: {said}"))
