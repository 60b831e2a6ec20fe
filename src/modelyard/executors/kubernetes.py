"""Kubernetes executor: one Kubernetes Job per worker, watched until it reports.

``modelyard server --executor kubernetes --executor-option image=... --artifacts s3://...``.
:func:`~modelyard.executors.k8s_manifest.job_manifest` builds the Job; the pod runs
:mod:`modelyard.executors.k8s_worker`, which reports through an events file in the artefact
store (the worker never reaches the server). Per run, a watcher thread polls the Job, its pods
and the events file: it relays new events in order, and when the pod cannot report (never
scheduled, image not pulled, out of memory, evicted, deleted) it reports a :class:`JobErrored`
with the reason from :func:`~modelyard.executors.k8s_status.outcome_of`. Cancel deletes the Job
and its pods. See docs/kubernetes.md for running it on a cluster.

The ``kubernetes`` client is imported when the executor is built: ``pip install
'modelyard[kubernetes]'``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import fsspec

from modelyard.errors import ConfigurationError
from modelyard.executors.base import OnEvent
from modelyard.executors.k8s_events import EventFileTailer, events_url
from modelyard.executors.k8s_manifest import KubernetesOptions, job_manifest
from modelyard.executors.k8s_status import Outcome, Phase, outcome_of
from modelyard.protocol.codec import EventDecodeError
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    WorkerEvent,
    WorkerSpec,
    WorkerStarted,
    lost_job_errors,
)
from modelyard.protocol.results import ExceptionInfo, FailureKind, failure
from modelyard.settings import Settings

log = logging.getLogger("modelyard.executors.kubernetes")

_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds for every API call
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_UNSHARED = {"file", "local", "memory"}


def _import_kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise ConfigurationError(
            "the kubernetes executor needs the kubernetes package: "
            "pip install 'modelyard[kubernetes]'"
        ) from None
    return kubernetes


def _shared(url: str) -> bool:
    return fsspec.utils.get_protocol(url) not in _UNSHARED


class KubernetesRun:
    """One worker's Job; its watcher reports exactly one terminal event per job it runs."""

    def __init__(self, executor: KubernetesExecutor, spec: WorkerSpec, name: str, uid: str,
                 selector: str, on_event: OnEvent) -> None:
        self.executor = executor
        self.spec = spec
        self.name = name
        self.uid = uid
        self.selector = selector
        self.on_event = on_event
        self.tailer = EventFileTailer(spec.artifact_root, spec.job_id)
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self._pending = set(spec.job_ids())
        self._started: set[str] = set()
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def cancel(self) -> None:
        """Stop the run: its watcher deletes the Job and its pods and reports the job cancelled.

        Returns at once (the dispatcher's loop calls it); :meth:`KubernetesExecutor.close`
        waits for the deletions.
        """
        self.stopped.set()

    def emit(self, event: WorkerEvent) -> None:
        with self._lock:
            if isinstance(event, JobFinished | JobErrored):
                if event.job_id not in self._pending:
                    return  # never a second terminal event
                self._pending.discard(event.job_id)
            elif isinstance(event, WorkerStarted):
                self._started.add(event.job_id)
        self.on_event(event)

    def end(self, info: ExceptionInfo, *, died: bool = False) -> None:
        """Report ``info`` as the error of every job that has no terminal event yet.

        ``died``: the pod ended on its own (crashed, out of memory); then a pack's jobs that
        never started are reported as not started (a fleet runs them again), not as the
        crash of the one that was running.
        """
        with self._lock:
            pending, self._pending = sorted(self._pending), set()
            started = set(self._started)
        for event in lost_job_errors(pending, started, info,
                                     packed=died and bool(self.spec.pack)):
            self.on_event(event)


class KubernetesExecutor:
    name = "kubernetes"
    packs, refills = True, False  # a pod runs its pack's jobs in turn (k8s_worker)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.options = KubernetesOptions.parse(settings.executor_options,
                                               job_timeout=settings.job_timeout)
        self._k8s = _import_kubernetes()
        self._check_store(settings)
        self._lock = threading.Lock()
        self._runs: dict[str, KubernetesRun] = {}
        self._api: Any = None
        self._batch: Any = None
        self._core: Any = None
        self.namespace = self.options.namespace or "default"

    def _check_store(self, settings: Settings) -> None:
        root, opts = settings.artifact_root, self.options
        mounted = opts.volume_claim is not None and "://" not in root and Path(
            root).is_relative_to(opts.volume_path)
        if not mounted and not _shared(root):
            raise ConfigurationError(
                f"the kubernetes executor needs an artefact store that the server and the pods "
                f"both reach, and {root} is not one: use --artifacts s3://bucket/prefix (or "
                "gs://, az://...), or a shared volume claim mounted at the same path in the "
                "server and the pods (--executor-option volume_claim=CLAIM --executor-option "
                f"volume_path=FOLDER, with the artefacts under FOLDER)"
            )
        local = [r for r in settings.data_roots if "://" not in r and not (
            opts.volume_claim and Path(r).is_relative_to(opts.volume_path))]
        if local:
            log.warning("data roots %s are local folders, which the worker pods cannot read "
                        "unless the image has them; use URLs (s3://...)", local)

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> None:
        with self._lock:
            if self._api is not None:
                return
            k8s = self._k8s
            cfg = k8s.client.Configuration()
            try:
                k8s.config.load_incluster_config(client_configuration=cfg)
                in_cluster = True
            except k8s.config.ConfigException:
                in_cluster = False
                try:
                    k8s.config.load_kube_config(context=self.options.context,
                                                client_configuration=cfg)
                except (k8s.config.ConfigException, OSError, ValueError) as exc:
                    raise ConfigurationError(
                        "the kubernetes executor found no cluster: the server is not in a pod "
                        f"and has no usable kubeconfig ({exc}); set KUBECONFIG (or "
                        "--executor-option context=...), or run the server in the cluster"
                    ) from None
            self.namespace = self.options.namespace or self._default_namespace(in_cluster)
            self.options = dataclasses.replace(self.options, namespace=self.namespace)
            self._api = k8s.client.ApiClient(cfg)
            self._batch = k8s.client.BatchV1Api(self._api)
            self._core = k8s.client.CoreV1Api(self._api)
            log.info("kubernetes executor: %s, namespace %s, image %s", cfg.host,
                     self.namespace, self.options.image)

    def _default_namespace(self, in_cluster: bool) -> str:
        if in_cluster and _SA_NAMESPACE.exists():
            return _SA_NAMESPACE.read_text().strip() or "default"
        try:
            contexts, active = self._k8s.config.list_kube_config_contexts()
        except Exception:  # no kubeconfig to read a namespace from: the default is fine
            return "default"
        chosen = next((c for c in contexts if c.get("name") == self.options.context), active)
        namespace = ((chosen or {}).get("context") or {}).get("namespace")
        return str(namespace) if namespace else "default"

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the API and return its JSON answer (the server's, unconverted).

        Raises:
            ApiException: the API answered with an error (translate with :meth:`_refused`).
            ConfigurationError: the API cannot be reached.
        """
        k8s = self._k8s
        try:
            resp = method(*args, _preload_content=False, _request_timeout=_TIMEOUT, **kwargs)
        except k8s.client.exceptions.ApiException:
            raise
        except Exception as exc:  # urllib3 and socket errors: the API is unreachable
            raise ConfigurationError(
                f"cannot reach the Kubernetes API at {self._api.configuration.host} to {what}: "
                f"{exc}"
            ) from None
        try:
            return json.loads(resp.data)
        finally:
            resp.release_conn()

    def _refused(self, exc: Any, what: str, name: str | None = None) -> ConfigurationError:
        """An ``ApiException`` as a message naming the object, the cause and the next step."""
        try:
            detail = json.loads(exc.body).get("message") or exc.reason
        except (TypeError, ValueError, AttributeError):
            detail = exc.reason
        ns = self.namespace
        if exc.status == 409 and name:
            hint = (f"a Job named {name} already exists in namespace {ns}, left by an earlier "
                    f"attempt of this job; delete it (kubectl delete job -n {ns} {name}) and "
                    "resubmit")
        elif exc.status in (401, 403):
            hint = (f"the server's Kubernetes identity may not {what} in namespace {ns}: grant "
                    "it the Role in docs/kubernetes.md (jobs: create, get, list, watch, delete; "
                    "pods: get, list)")
        elif exc.status == 404 and name is None:
            hint = f"namespace {ns} does not exist: create it or set --executor-option namespace="
        else:
            hint = f"the Kubernetes API refused to {what} ({exc.status} {exc.reason})"
        return ConfigurationError(f"{hint}: {detail}")

    def warm_up(self) -> None:
        """Load the cluster's configuration and check that Jobs can be listed.

        Raises:
            ConfigurationError: no cluster configuration, no access, or no such namespace.
        """
        self._connect()
        try:
            self._call("list Jobs", self._batch.list_namespaced_job, self.namespace, limit=1)
        except self._k8s.client.exceptions.ApiException as exc:
            raise self._refused(exc, "list Jobs") from None

    # -- runs ---------------------------------------------------------------------------------

    def start(self, spec: WorkerSpec, on_event: OnEvent) -> KubernetesRun:
        self._connect()
        manifest = job_manifest(spec, self.options)
        name = manifest["metadata"]["name"]
        EventFileTailer(spec.artifact_root, spec.job_id).reset()  # an earlier attempt's lines
        try:
            created = self._call(f"create Job {name}", self._batch.create_namespaced_job,
                                 self.namespace, manifest)
        except self._k8s.client.exceptions.ApiException as exc:
            raise self._refused(exc, "create Jobs", name) from None
        labels = created["spec"]["selector"]["matchLabels"]  # the controller's, version-proof
        run = KubernetesRun(self, spec, name, created["metadata"]["uid"],
                            ",".join(f"{k}={v}" for k, v in sorted(labels.items())), on_event)
        run.thread = threading.Thread(target=self._watch, args=(run,),
                                      name=f"modelyard-k8s-{name}", daemon=True)
        with self._lock:
            self._runs[spec.job_id] = run
        run.thread.start()
        return run

    def delete_job(self, name: str) -> None:
        """Delete a Job and (first) its pods; a Job already gone is fine."""
        try:
            self._call(f"delete Job {name}", self._batch.delete_namespaced_job, name,
                       self.namespace, propagation_policy="Foreground")
        except self._k8s.client.exceptions.ApiException as exc:
            if exc.status != 404:
                log.error("%s; delete it by hand: kubectl delete job -n %s %s",
                          self._refused(exc, "delete Jobs", name), self.namespace, name)
        except ConfigurationError as exc:
            log.error("%s; delete it by hand: kubectl delete job -n %s %s", exc,
                      self.namespace, name)

    def observe(self, run: KubernetesRun) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The run's Job (``None`` once deleted or replaced) and its pods, as the API has them."""
        try:
            job = self._call(f"read Job {run.name}", self._batch.read_namespaced_job, run.name,
                             self.namespace)
        except self._k8s.client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise self._refused(exc, "get Jobs", run.name) from None
            job = None
        if job is not None and job.get("metadata", {}).get("uid") != run.uid:
            job = None  # a Job of the same name created since is not ours
        try:
            pods = self._call(f"list the pods of Job {run.name}", self._core.list_namespaced_pod,
                              self.namespace, label_selector=run.selector)
        except self._k8s.client.exceptions.ApiException as exc:
            raise self._refused(exc, "list pods") from None
        return job, list(pods.get("items") or ())

    def _watch(self, run: KubernetesRun) -> None:
        opts = self.options
        stuck_since: dict[str, float] = {}
        trouble_since: float | None = None
        ended_seen = 0
        try:
            while run.pending and not run.stopped.is_set():
                try:
                    # The status first, then the file: a pod seen ended wrote its last line.
                    job, pods = self.observe(run)
                    new = run.tailer.poll()
                except EventDecodeError as exc:
                    run.end(failure(FailureKind.protocol_error,
                                    f"bad line in {self._events(run)}: {exc}"))
                    self.delete_job(run.name)
                    return
                except (ConfigurationError, OSError) as exc:
                    now = time.monotonic()
                    if trouble_since is None:
                        trouble_since = now
                        log.warning("job %s: %s; retrying", run.spec.job_id, exc)
                    if now - trouble_since >= opts.lost_after_s:
                        run.end(failure(FailureKind.worker_lost,
                                        f"lost track of Kubernetes Job {run.name} for "
                                        f"{opts.lost_after_s:g} s: {exc}"))
                        return
                    run.stopped.wait(opts.poll_s)
                    continue
                trouble_since = None
                for event in new:
                    run.emit(event)
                if not run.pending:
                    return
                outcome = outcome_of(job, pods)
                if outcome.ended:
                    ended_seen += 1  # read the file once more: a store may lag its last put
                    if ended_seen > 1:
                        run.end(self._ended_info(run, outcome), died=True)
                        return
                elif outcome.phase is Phase.STUCK:
                    since = stuck_since.setdefault(outcome.reason, time.monotonic())
                    pulling = outcome.error_type in ("ImagePullError", "ContainerConfigError")
                    grace = opts.pull_grace_s if pulling else opts.schedule_grace_s
                    if time.monotonic() - since >= grace:
                        info = outcome.exception_info()
                        run.end(dataclasses.replace(
                            info, message=f"{info.message} (gave up after {grace:g} s)"))
                        self.delete_job(run.name)  # or it would run whenever it can
                        return
                else:
                    stuck_since.clear()
                run.stopped.wait(opts.poll_s)
        except Exception as exc:  # a bug here must not leave a job running forever
            log.exception("job %s: watching Kubernetes Job %s failed", run.spec.job_id, run.name)
            run.end(failure(FailureKind.worker_lost,
                            f"the kubernetes executor stopped watching Job {run.name}: "
                            f"{type(exc).__name__}: {exc}"))
        finally:
            if run.stopped.is_set() and run.pending:
                self.delete_job(run.name)
                run.end(failure(FailureKind.cancelled,
                                f"cancelled: Kubernetes Job {run.name} was deleted"))
            with self._lock:
                if self._runs.get(run.spec.job_id) is run:
                    del self._runs[run.spec.job_id]

    def _events(self, run: KubernetesRun) -> str:
        return events_url(run.spec.artifact_root, run.spec.job_id)

    def _ended_info(self, run: KubernetesRun, outcome: Outcome) -> ExceptionInfo:
        if outcome.phase is not Phase.SUCCEEDED:
            return outcome.exception_info()
        return Outcome(
            Phase.FAILED, "NoResult",
            f"the worker pod of Kubernetes Job {run.name} exited 0 without reporting a result "
            f"in {self._events(run)}; check that the pod can write to the artefact store "
            f"(credentials: --executor-option env_secret=...) and see its log: kubectl logs "
            f"-n {self.namespace} job/{run.name}",
        ).exception_info()

    def close(self, timeout: float = 60.0) -> None:
        """Delete every Job this executor started that is still running, and wait for that."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.cancel()
        deadline = time.monotonic() + timeout
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))
        if self._api is not None:
            self._api.close()
