"""Ray executor: each job is one Ray task on an existing Ray cluster (``--executor ray``).

This module is the server side; what runs inside the cluster (the task's body and the mailbox
actor) is :mod:`modelyard.executors.ray_node`. docs/ray.md is the operator's guide.

``--ray-address`` is ``auto`` (the cluster this machine belongs to), ``HOST:PORT`` of the head
node's GCS, or ``ray://HOST:10001`` (Ray Client; ``modelyard[ray]`` installs its grpcio).

How a job runs:

* :meth:`RayExecutor.start` turns ``compute_resource`` and the request's ``resources`` block into
  Ray task options (:func:`task_resources`), fails the job at once if no node of the cluster
  could ever run it (Ray would leave it pending forever), and submits
  :func:`~modelyard.executors.ray_node.run_task`. Tasks never retry (a job never runs twice) and
  get a fresh worker process each (``max_calls=1``), as with the local executor.
* Inside the task, :func:`modelyard.runtime.training.execute` runs unchanged. Its events, and
  everything the job writes to stdout/stderr (subprocesses included) or logs, go in small batches
  to a :class:`~modelyard.executors.ray_node.Mailbox` actor that this executor owns; the terminal
  event is the task's return value, sent after a last synchronous flush so that it comes after
  the job's other events.
* One relay thread on the server drains the mailbox, watches the task references, and reports a
  task that died (worker crashed or OOM-killed, node lost, cancelled) as :class:`JobErrored`.

Every node reads the data and writes the artefacts itself, so ``--artifacts`` must be a URL or
path that every node reaches (``s3://...``, ``gs://...``, a shared filesystem), as must the data
roots and ``--workflows`` files; modelyard and the workflows' packages must be installed on
every node. ``--job-memory-limit`` does not apply: Ray's memory monitor guards the nodes.

Executor options (``--executor-option KEY=VALUE``): ``num_cpus`` (CPUs per job when the request
sets none, default 1), ``num_gpus`` (GPUs for ``compute_resource: GPU``, default 1),
``high_memory_gb`` (memory reserved for ``HIGH_MEMORY``, default 8), ``namespace`` (default
``modelyard``), ``infeasible`` (``fail``, the default, or ``wait`` on an autoscaling cluster
that adds nodes on demand).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
from typing import Any

import ray
import ray.exceptions

from modelyard.errors import ConfigurationError
from modelyard.executors.base import OnEvent
from modelyard.executors.ray_node import Mailbox, run_task
from modelyard.protocol.events import JobErrored, JobFinished, WorkerEvent, WorkerSpec
from modelyard.protocol.results import ExceptionInfo, FailureKind, failure
from modelyard.request.loading import parse_request
from modelyard.settings import Settings

log = logging.getLogger("modelyard.executors.ray")

_GIB = 2**30
_POLL_S = 0.1
_NEXT_STEP = (
    "start a cluster with `ray start --head`, or pass --ray-address HOST:PORT of a running one"
)


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """The ``--executor-option`` values the Ray executor reads."""

    num_cpus: float = 1.0
    num_gpus: float = 1.0
    high_memory_gb: float = 8.0
    namespace: str = "modelyard"
    infeasible: str = "fail"

    @classmethod
    def parse(cls, options: tuple[tuple[str, str], ...]) -> RayOptions:
        """Read ``KEY=VALUE`` options; unknown keys and bad values raise ConfigurationError."""
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in options:
            if key not in known:
                raise ConfigurationError(
                    f"executor option {key!r} is not one the ray executor reads; use "
                    f"{', '.join(sorted(known))}"
                )
            if not isinstance(getattr(cls, key), float):
                values[key] = raw
                continue
            try:
                values[key] = float(raw)
            except ValueError:
                values[key] = None
            if values[key] is None or values[key] < 0:
                raise ConfigurationError(
                    f"executor option {key} must be a number >= 0, got {raw!r} instead"
                )
        if values.get("infeasible", "fail") not in ("fail", "wait"):
            raise ConfigurationError(
                f"executor option infeasible must be fail or wait, got {values['infeasible']!r}"
            )
        return cls(**values)


def task_resources(request: dict[str, Any], options: RayOptions) -> dict[str, float]:
    """Ray's ``CPU``/``GPU``/``memory`` (bytes) for a request: its ``resources`` block first,
    then the executor's defaults for its ``compute_resource``."""
    parsed = parse_request(request)
    wanted = parsed.resources
    kind = parsed.compute_resource.value
    need = {"CPU": wanted.num_cpus if wanted.num_cpus is not None else options.num_cpus}
    gpus = wanted.num_gpus
    if gpus is None and kind == "GPU":
        gpus = options.num_gpus
    if gpus:
        need["GPU"] = gpus
    memory_gb = wanted.memory_gb
    if memory_gb is None and kind == "HIGH_MEMORY":
        memory_gb = options.high_memory_gb
    if memory_gb:
        need["memory"] = float(int(memory_gb * _GIB))
    return need


def infeasibility(need: dict[str, float], nodes: list[dict[str, Any]]) -> str | None:
    """Why no alive node in ``nodes`` (``ray.nodes()``) can ever run a task needing ``need``."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if any(all(r.get(k, 0) >= v for k, v in need.items()) for r in alive):
        return None
    absent = [k for k, v in need.items() if v > 0 and not any(r.get(k, 0) > 0 for r in alive)]
    if absent:
        nouns = {"CPU": "a CPU", "GPU": "a GPU", "memory": "memory"}
        what = f"no node in the Ray cluster has {' or '.join(nouns[k] for k in absent)}"
    else:
        what = "no single node in the Ray cluster is that large"
    offered = "; ".join(_describe(r) for r in alive) or "none alive"
    return f"{what}: the job needs {_describe(need)}, the nodes have {offered}"


def _describe(resources: dict[str, float]) -> str:
    parts = [f"{resources.get('CPU', 0):g} CPU", f"{resources.get('GPU', 0):g} GPU"]
    if "memory" in resources:
        parts.append(f"{resources['memory'] / _GIB:.3g} GiB memory")
    return ", ".join(parts)


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


@dataclasses.dataclass
class RayRun:
    """One job's Ray task."""

    job_id: str
    ref: Any
    on_event: OnEvent

    def cancel(self) -> None:
        try:
            ray.cancel(self.ref, force=True)
        except Exception as exc:  # already finished, or the cluster is gone
            log.debug("cancel of job %s: %s", self.job_id, exc)


class RayExecutor:
    name = "ray"
    # One task per job, a fleet's tenants too, each in a fresh worker process (max_calls=1):
    # no packing, so a tenant's failure stays its own.
    packs = refills = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.options = RayOptions.parse(settings.executor_options)
        self.address = settings.ray_address or "auto"
        self._lock = threading.Lock()
        self._runs: dict[str, RayRun] = {}
        self._mailbox: Any = None
        self._task: Any = None
        self._we_connected = False
        self._relay: threading.Thread | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()

    # -- connection -------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Connect to the cluster now: a wrong address stops the server at start-up."""
        self._connect()

    def _connect(self) -> None:
        with self._lock:
            if self._mailbox is not None:
                return
            if not ray.is_initialized():
                self._check_reachable()
                self._init()
                self._we_connected = True
            self._mailbox = ray.remote(Mailbox).options(num_cpus=0, max_restarts=-1).remote()
            self._task = ray.remote(max_calls=1)(run_task)
            self._relay = threading.Thread(target=self._relay_loop, name="modelyard-ray-relay",
                                           daemon=True)
            self._relay.start()

    def _check_reachable(self) -> None:
        # ray.init retries an unreachable address for minutes, then exits the process.
        if self.address.startswith("ray://"):
            try:
                import grpc  # noqa: F401
            except ImportError:
                raise ConfigurationError(
                    f"--ray-address {self.address} uses Ray Client, which needs "
                    "pip install 'ray[client]'; or run the server on a cluster node and pass "
                    "--ray-address auto"
                ) from None
            target = self.address.removeprefix("ray://")
        elif self.address == "auto":
            return
        else:
            target = self.address
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                     timeout=5).close()
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot reach the Ray cluster at --ray-address {self.address} ({exc}); "
                f"{_NEXT_STEP}"
            ) from None

    def _init(self) -> None:
        # ray.init installs a SIGTERM handler that exits at once; keep the server's own.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        try:
            ray.init(address=self.address, namespace=self.options.namespace,
                     log_to_driver=False, logging_level=logging.WARNING)
        except (Exception, SystemExit) as exc:
            raise ConfigurationError(
                f"cannot connect to the Ray cluster at --ray-address {self.address} "
                f"({type(exc).__name__}: {exc}); {_NEXT_STEP}"
            ) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)

    # -- jobs ---------------------------------------------------------------------------------

    def start(self, spec: WorkerSpec, on_event: OnEvent) -> RayRun:
        self._connect()
        # A pipeline step's job carries its StepJob, not a train request: the executor's CPUs.
        need = ({"CPU": self.options.num_cpus} if spec.step is not None
                else task_resources(spec.request, self.options))
        if self.options.infeasible == "fail":
            nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
            why = infeasibility(need, nodes)
            if why is not None:
                raise ConfigurationError(
                    f"{why}; add such a node, lower the request's resources or change its "
                    "compute_resource (on an autoscaling cluster, start the server with "
                    "--executor-option infeasible=wait)"
                )
        root = spec.artifact_root
        if "://" not in root:
            root = os.path.abspath(root)  # a worker's working directory is not the server's
        spec = dataclasses.replace(spec, artifact_root=root)
        options: dict[str, Any] = {
            "num_cpus": need["CPU"], "num_gpus": need.get("GPU", 0), "max_retries": 0,
            "name": f"modelyard-job-{spec.job_id}",
        }
        if "memory" in need:
            options["memory"] = int(need["memory"])
        with self._lock:  # registered before the relay can see the task's first events
            ref = self._task.options(**options).remote(spec, self._mailbox)
            run = RayRun(spec.job_id, ref, on_event)
            self._runs[spec.job_id] = run
        self._wake.set()
        return run

    def _relay_loop(self) -> None:
        while not self._closing.is_set():
            self._wake.clear()  # before the snapshot: a start after it sets the flag again
            with self._lock:
                runs = list(self._runs.values())
            if not runs:
                self._wake.wait(1.0)
                continue
            try:
                # Done first, then the mailbox: a finished task flushed its last events already.
                done, _ = ray.wait([r.ref for r in runs], num_returns=len(runs), timeout=0)
                batches: dict[str, list[WorkerEvent]] = ray.get(self._mailbox.take.remote(),
                                                                timeout=60)
            except Exception as exc:
                if not self._closing.is_set():
                    log.warning("cannot reach the Ray cluster (%s); retrying", exc)
                    self._closing.wait(1.0)
                continue
            for job_id, events in batches.items():
                with self._lock:
                    run = self._runs.get(job_id)
                for event in events:
                    if run is not None:  # else cancelled by close(): nobody listens
                        run.on_event(event)
            finished = set(done)
            for run in runs:
                if run.ref in finished:
                    with self._lock:
                        self._runs.pop(run.job_id, None)
                    run.on_event(self._outcome(run))
            if not done:
                self._closing.wait(_POLL_S)

    def _outcome(self, run: RayRun) -> WorkerEvent:
        try:
            event = ray.get(run.ref, timeout=60)
        except Exception as exc:
            return JobErrored(run.job_id, lost_record(exc))
        if isinstance(event, JobFinished | JobErrored):
            return event
        return JobErrored(run.job_id, failure(FailureKind.protocol_error,
                                              f"bad result from the Ray task: {event!r:.200}"))

    def close(self) -> None:
        """Cancel running tasks and disconnect; a cluster is never shut down from here."""
        self._closing.set()
        self._wake.set()
        with self._lock:
            runs = list(self._runs.values())
            self._runs.clear()
        for run in runs:
            run.cancel()
        if self._relay is not None:
            self._relay.join(timeout=10)
        if self._we_connected:
            ray.shutdown()
            self._we_connected = False
        self._mailbox = None
