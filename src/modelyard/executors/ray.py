"""Ray executor: each job is one Ray task on an existing Ray cluster (``--executor ray``), and a
fleet's small tenants run in packs, one long-running task each.

This module is the server side: the connection and the relay. What the relay follows (a job's
task, a pack) is :mod:`modelyard.executors.ray_packs`; what runs inside the cluster (the tasks'
bodies and the mailbox actor) is :mod:`modelyard.executors.ray_node`. docs/ray.md is the
operator's guide.

``--ray-address`` is ``auto`` (the cluster this machine belongs to), ``HOST:PORT`` of the head
node's GCS, or ``ray://HOST:10001`` (Ray Client; ``modelyard[ray]`` installs its grpcio).

How a job runs:

* :meth:`RayExecutor.start` turns ``compute_resource`` and the request's ``resources`` block into
  Ray task options (:func:`task_resources`), fails the job at once if no node of the cluster
  could ever run it (Ray would leave it pending forever), and submits
  :func:`~modelyard.executors.ray_node.run_task`. Tasks never retry (a job never runs twice).
  Ray reuses worker processes; one warm-up task per slot at connect leaves them with the
  training libraries imported, as the local executor's fork server has them.
* A pack (a spec with ``pack``) is :func:`~modelyard.executors.ray_node.run_pack`, refilled
  through the mailbox: :class:`~modelyard.executors.ray_packs.RayPack`.
* Inside the task, :func:`modelyard.runtime.training.execute` runs unchanged. Its events, and
  everything the job writes to stdout/stderr (subprocesses included) or logs, go in small batches
  to a :class:`~modelyard.executors.ray_node.Mailbox` actor that this executor owns; the terminal
  event is the task's return value, sent after a last synchronous flush so that it comes after
  the job's other events.
* One relay thread on the server drains the mailbox, watches the task references, and reports a
  task that died (worker crashed or OOM-killed, node lost, cancelled) as :class:`JobErrored`,
  for each job a dead pack left without an end.

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

import logging
import signal
import socket
import threading
from typing import Any

import ray
import ray.exceptions

from modelyard.errors import ConfigurationError
from modelyard.executors.base import OnEvent
from modelyard.executors.ray_node import Mailbox, run_pack, run_task, warm
from modelyard.executors.ray_packs import RayPack, RayRun, for_the_cluster
from modelyard.executors.ray_resources import RayOptions, infeasibility, task_resources
from modelyard.protocol.events import WorkerEvent, WorkerSpec
from modelyard.settings import Settings

log = logging.getLogger("modelyard.executors.ray")

_POLL_S = 0.1
_NEXT_STEP = (
    "start a cluster with `ray start --head`, or pass --ray-address HOST:PORT of a running one"
)


class RayExecutor:
    name = "ray"
    # A fleet's small tenants run in packs, each one long-running task (ray_packs.py).
    packs = refills = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.options = RayOptions.parse(settings.executor_options)
        self.address = settings.ray_address or "auto"
        self._lock = threading.Lock()
        self._runs: dict[str, RayRun | RayPack] = {}  # by mailbox key: job or pack id
        self._mailbox: Any = None
        self._task: Any = None
        self._pack: Any = None
        self._warm: list[Any] = []
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
            self._task = ray.remote(run_task)
            self._pack = ray.remote(run_pack)
            self._warm_workers()
            self._relay = threading.Thread(target=self._relay_loop, name="modelyard-ray-relay",
                                           daemon=True)
            self._relay.start()

    def _warm_workers(self) -> None:
        """Ray reuses a task's worker process for the next tasks: one per slot that has imported
        the training runtime is ready before the first job. Not where no node has the CPUs:
        Ray would hold such tasks, and warn about them, forever."""
        need = {"CPU": self.options.num_cpus}
        if infeasibility(need, ray.nodes()) is None:  # type: ignore[no-untyped-call]
            self._warm = [ray.remote(warm).options(num_cpus=need["CPU"]).remote()
                          for _ in range(self.settings.concurrency)]

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

    def start(self, spec: WorkerSpec, on_event: OnEvent) -> RayRun | RayPack:
        self._connect()
        need = self._resources(spec)
        options: dict[str, Any] = {"num_cpus": need["CPU"], "num_gpus": need.get("GPU", 0)}
        if "memory" in need:
            options["memory"] = int(need["memory"])
        if spec.pack:
            return self._start_pack(spec, on_event, options)
        with self._lock:  # registered before the relay can see the task's first events
            ref = self._task.options(
                **options, max_retries=0, name=f"modelyard-job-{spec.job_id}",
            ).remote(for_the_cluster(spec), self._mailbox)
            run = RayRun(spec.job_id, ref, on_event)
            self._runs[spec.job_id] = run
        self._wake.set()
        return run

    def _start_pack(self, spec: WorkerSpec, on_event: OnEvent,
                    options: dict[str, Any]) -> RayPack:
        specs = [for_the_cluster(s) for s in spec.pack]
        with self._lock:  # registered before the relay can see the pack's first events
            ref = self._pack.options(
                **options, max_retries=0, name=f"modelyard-{spec.job_id}",
            ).remote(spec.job_id, specs, self._mailbox)
            pack = RayPack(spec.job_id, ref, self._mailbox, on_event,
                           pending={s.job_id for s in specs})
            self._runs[spec.job_id] = pack
        if not spec.refill:
            pack.feed([])  # it says PackIdle all the same
        self._wake.set()
        return pack

    def _resources(self, spec: WorkerSpec) -> dict[str, float]:
        """What ``spec`` asks of the cluster; ConfigurationError if no node could ever give it."""
        # A pipeline step's job carries its StepJob, not a train request: the executor's CPUs.
        # A pack's tenants share their fleet's request.
        first = spec.pack[0] if spec.pack else spec
        need = ({"CPU": self.options.num_cpus} if first.step is not None
                else task_resources(first.request, self.options))
        if self.options.infeasible == "fail":
            nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
            why = infeasibility(need, nodes)
            if why is not None:
                raise ConfigurationError(
                    f"{why}; add such a node, lower the request's resources or change its "
                    "compute_resource (on an autoscaling cluster, start the server with "
                    "--executor-option infeasible=wait)"
                )
        return need

    def _relay_loop(self) -> None:
        while not self._closing.is_set():
            self._wake.clear()  # before the snapshot: a start after it sets the flag again
            with self._lock:
                runs = list(self._runs.items())
            if not runs:
                self._wake.wait(1.0)
                continue
            refs = [ref for _, run in runs for ref in run.refs()]
            try:
                # Done first, then the mailbox: a finished call flushed its last events already.
                done, _ = (ray.wait(refs, num_returns=len(refs), timeout=0) if refs
                           else ([], []))
                batches: dict[str, list[WorkerEvent]] = ray.get(self._mailbox.take.remote(),
                                                                timeout=60)
            except Exception as exc:
                if not self._closing.is_set():
                    log.warning("cannot reach the Ray cluster (%s); retrying", exc)
                    self._closing.wait(1.0)
                continue
            for key, events in batches.items():
                with self._lock:
                    run = self._runs.get(key)
                if run is not None:  # else cancelled by close(): nobody listens
                    run.deliver(events)
            finished = set(done)
            for key, run in runs:
                if run.settle(finished):
                    with self._lock:
                        self._runs.pop(key, None)
            if not done:
                self._closing.wait(_POLL_S)

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
