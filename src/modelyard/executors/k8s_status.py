"""What the Kubernetes API says about a worker, as a Modelyard outcome.

:func:`outcome_of` reads a Job and its pods exactly as the API server returns them (JSON
objects, camelCase keys) and answers with an :class:`Outcome`: keep waiting, waiting on
something that may never resolve (fail after a grace period), running, or ended and why. It is a
pure function, so it is tested against recorded API responses; the executor's watcher polls the
API and applies the grace periods.

The worker's own result never comes from here: a pod that exits 0 wrote its terminal event to
the events file (:mod:`modelyard.executors.k8s_events`). These outcomes explain a worker that
could not report: it never started, was killed, or vanished.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.protocol.results import ExceptionInfo, FailureKind, failure

Json = Mapping[str, Any]

# Waiting reasons that may resolve (a registry hiccup, a Secret created a moment later).
_PULL_WAITING = {"ErrImagePull", "ImagePullBackOff"}
_CONFIG_WAITING = {"CreateContainerConfigError", "CreateContainerError"}
# Waiting reasons that never resolve by themselves.
_HOPELESS_WAITING = {"InvalidImageName", "ErrImageNeverPull"}


class Phase(enum.StrEnum):
    PENDING = "pending"  # no pod yet, scheduling, pulling, creating: keep waiting
    STUCK = "stuck"  # waiting on something that may never resolve: fail after a grace period
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the pod exited 0: its result is in the events file
    FAILED = "failed"  # ended without a result; ``message`` says why
    GONE = "gone"  # the Job no longer exists


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Where a worker stands, with Kubernetes' reason and a message for people."""

    phase: Phase
    reason: str = ""  # Kubernetes' word: Unschedulable, ImagePullBackOff, OOMKilled, Evicted...
    message: str = ""  # what happened and what to do next
    error_type: str = "WorkerLost"  # ``exception_info["type"]`` when this ends the job
    exitcode: int | None = None  # the worker container's, when it ended with one

    @property
    def ended(self) -> bool:
        return self.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.GONE)

    def exception_info(self) -> ExceptionInfo:
        """``exception_info`` for a job this outcome ends (``type`` names Kubernetes' error)."""
        kind = _KIND_OF_ERROR.get(self.error_type, FailureKind.worker_lost)
        info = failure(kind, self.message, exitcode=self.exitcode)
        return dataclasses.replace(info, type=self.error_type)


# The kind of each error type an outcome names; any other (a pod evicted, a Job deleted) is
# ``worker_lost``. A pod that never ran is the executor's failure to start the worker.
_KIND_OF_ERROR = {
    "JobTimeout": FailureKind.timeout,
    "OutOfMemory": FailureKind.out_of_memory,
    "WorkerCrashed": FailureKind.worker_crashed,
    "ImagePullError": FailureKind.executor_error,
    "ContainerConfigError": FailureKind.executor_error,
    "PodNotCreated": FailureKind.executor_error,
    "Unschedulable": FailureKind.executor_error,
}


def outcome_of(job: Json | None, pods: Sequence[Json]) -> Outcome:
    """The outcome of a worker's Job (``None`` once it is deleted) and its pods.

    Job conditions decide when present (``Failed``/``FailureTarget``, ``Complete``/
    ``SuccessCriteriaMet``); the pods tell why, and tell first, as the Job controller lags them.
    """
    if job is None:
        return Outcome(
            Phase.GONE, "NotFound",
            "the worker's Kubernetes Job was deleted before the worker reported a result "
            "(kubectl delete, or its ttlSecondsAfterFinished passed); resubmit the request",
        )
    meta = job.get("metadata", {})
    where = _Where(meta.get("namespace", "default"), meta.get("name", "?"))
    conditions = {c.get("type"): c for c in job.get("status", {}).get("conditions") or ()
                  if c.get("status") == "True"}
    by_age = sorted(pods, key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")))
    failures = [o for o in (_pod_failure(p, where) for p in by_age) if o is not None]

    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed is not None:
        if failed.get("reason") == "DeadlineExceeded":
            return _timed_out(job.get("spec", {}).get("activeDeadlineSeconds"), where)
        if failures:
            return failures[-1]
        return Outcome(
            Phase.FAILED, failed.get("reason", "Failed"),
            f"{where} failed ({failed.get('reason')}: {failed.get('message')}) and its pod is "
            "gone, so it was probably deleted or evicted (node drained, scaled down or "
            "preempted); resubmit the request",
        )
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return Outcome(Phase.SUCCEEDED, "Complete")
    if failures:  # the Job controller has not caught up yet
        return failures[-1]
    if any(p.get("status", {}).get("phase") == "Succeeded" for p in by_age):
        return Outcome(Phase.SUCCEEDED, "Succeeded")
    if not by_age:  # normal for a moment; for long, something refuses to create the pod
        return Outcome(
            Phase.STUCK, "NoPod",
            f"{where} has created no pod; a ResourceQuota, LimitRange or admission policy may "
            f"refuse it: see kubectl describe job -n {where.namespace} {where.name}",
            "PodNotCreated",
        )
    return _live(by_age[-1], where)


@dataclasses.dataclass(frozen=True)
class _Where:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"Kubernetes Job {self.namespace}/{self.name}"

    @property
    def logs(self) -> str:
        return f"see its log: kubectl logs -n {self.namespace} job/{self.name}"


def _timed_out(deadline: Any, where: _Where) -> Outcome:
    limit = f"its activeDeadlineSeconds ({deadline} s)" if deadline else "its deadline"
    return Outcome(
        Phase.FAILED, "DeadlineExceeded",
        f"timed out: {where} ran longer than {limit} and was stopped; raise timeout_seconds in "
        "the request (or --job-timeout) or make training faster",
        "JobTimeout",
    )


def _container_statuses(pod: Json) -> list[Json]:
    status = pod.get("status", {})
    return [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]


def _memory_limit(pod: Json, container: str) -> str | None:
    for c in pod.get("spec", {}).get("containers") or ():
        if c.get("name") == container:
            limit = c.get("resources", {}).get("limits", {}).get("memory")
            return str(limit) if limit is not None else None
    return None


def _pod_failure(pod: Json, where: _Where) -> Outcome | None:
    """Why a pod ended without a result, or ``None`` if it has not."""
    status = pod.get("status", {})
    name = pod.get("metadata", {}).get("name", "?")
    reason, message = status.get("reason"), status.get("message")
    if reason == "Evicted":
        return Outcome(
            Phase.FAILED, "Evicted",
            f"the worker pod {name} was evicted by Kubernetes: {message} Resubmit the request; "
            "if its node ran short of memory, ask for what the job uses (resources.memory_gb) "
            "so that the pod is not the first to go",
            "PodEvicted",
        )
    if reason == "DeadlineExceeded":
        return _timed_out(pod.get("spec", {}).get("activeDeadlineSeconds"), where)
    disruption = next((c for c in status.get("conditions") or ()
                       if c.get("type") == "DisruptionTarget" and c.get("status") == "True"), None)
    if status.get("phase") != "Failed":
        if disruption is not None and pod.get("metadata", {}).get("deletionTimestamp"):
            return _disrupted(name, disruption)
        return None
    for cs in _container_statuses(pod):
        ended = (cs.get("state") or {}).get("terminated")
        if not ended or ended.get("exitCode", 0) == 0:
            continue
        code, why = ended.get("exitCode"), ended.get("reason") or "Error"
        if why == "OOMKilled":
            limit = _memory_limit(pod, cs.get("name", ""))
            at = f" at its limit of {limit}" if limit else ""
            return Outcome(
                Phase.FAILED, "OOMKilled",
                f"the worker ran out of memory: container {cs.get('name')} of pod {name} was "
                f"OOMKilled{at}; raise resources.memory_gb in the request (or use "
                "compute_resource: HIGH_MEMORY), or train on less data",
                "OutOfMemory", code,
            )
        signal = " (killed by SIGKILL)" if code == 137 else ""
        detail = f": {ended['message'].strip()}" if ended.get("message") else ""
        return Outcome(
            Phase.FAILED, why,
            f"the worker container {cs.get('name')} of pod {name} exited with code {code}"
            f"{signal} ({why}{detail}) before reporting a result; {where.logs}",
            "WorkerCrashed", code,
        )
    if disruption is not None:
        return _disrupted(name, disruption)
    return Outcome(
        Phase.FAILED, reason or "Failed",
        f"the worker pod {name} failed ({reason}: {message}) before reporting a result; "
        f"{where.logs}",
    )


def _disrupted(name: str, condition: Json) -> Outcome:
    return Outcome(
        Phase.FAILED, condition.get("reason", "DisruptionTarget"),
        f"the worker pod {name} was stopped by Kubernetes ({condition.get('reason')}: "
        f"{condition.get('message')}); resubmit the request",
        "PodEvicted",
    )


def _live(pod: Json, where: _Where) -> Outcome:
    """The outcome of a pod that has not ended."""
    status = pod.get("status", {})
    name = pod.get("metadata", {}).get("name", "?")
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        why, detail = waiting.get("reason"), waiting.get("message")
        if why in _PULL_WAITING or why in _HOPELESS_WAITING:
            return Outcome(
                Phase.FAILED if why in _HOPELESS_WAITING else Phase.STUCK, why,
                f"the worker image {cs.get('image')!r} cannot be pulled ({why}: {detail}); "
                "check the image name (--executor-option image=...), that it was pushed, and "
                "the registry credentials (--executor-option image_pull_secret=...)",
                "ImagePullError",
            )
        if why in _CONFIG_WAITING:
            return Outcome(
                Phase.STUCK, why,
                f"the worker container of pod {name} cannot be created ({why}: {detail}); check "
                "that the Secret and volume claim it names exist (executor options env_secret, "
                "volume_claim)",
                "ContainerConfigError",
            )
    for cond in status.get("conditions") or ():
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == (
                "PodScheduled", "False", "Unschedulable"):
            text = str(cond.get("message", ""))
            hint = (" (GPU jobs need nodes that advertise nvidia.com/gpu: the NVIDIA device "
                    "plugin)" if "gpu" in text.lower() else "")
            return Outcome(
                Phase.STUCK, "Unschedulable",
                f"no node can run the worker pod {name}: {text} Ask for less (resources.num_cpus, "
                f"memory_gb, num_gpus in the request) or add nodes that fit{hint}",
                "Unschedulable",
            )
    phase = status.get("phase")
    if phase == "Running":
        return Outcome(Phase.RUNNING, "Running")
    waiting = next(((cs.get("state") or {}).get("waiting", {}).get("reason")
                    for cs in _container_statuses(pod)
                    if (cs.get("state") or {}).get("waiting")), None)
    return Outcome(Phase.PENDING, waiting or phase or "Pending", f"{where} is {waiting or phase}")
