"""The Kubernetes Job that runs one worker: options, names, labels and resources, as plain data.

:func:`job_manifest` turns a :class:`WorkerSpec` into a ``batch/v1`` Job manifest (a dict, as
``kubectl apply`` or ``BatchV1Api.create_namespaced_job`` takes it). The request's
``compute_resource`` and ``resources`` block become requests and limits (equal, so the pod gets
the Guaranteed QoS class and is the last to be evicted); a GPU request asks for
``nvidia.com/gpu`` and tolerates the taint GPU nodes usually carry. Nothing here talks to a
cluster, so manifests can be checked against the Kubernetes schemas offline.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from typing import Any

from modelyard.errors import ConfigurationError, RequestError
from modelyard.pipelines.blocks import allowed_image
from modelyard.protocol.codec import spec_to_json
from modelyard.protocol.events import WorkerSpec
from modelyard.protocol.steps import StepJob
from modelyard.request.loading import parse_request
from modelyard.request.models import ComputeResource, TrainRequest

DEFAULT_IMAGE = "modelyard:latest"
WORKER_MODULE = "modelyard.executors.k8s_worker"
CONTAINER = "worker"
SPEC_ENV = "MODELYARD_WORKER_SPEC"
APP_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
JOB_ID_LABEL = "modelyard.dev/job-id"
MODEL_LABEL = "modelyard.dev/model"
MODEL_ANNOTATION = "modelyard.dev/model-name"
JOB_ID_ANNOTATION = "modelyard.dev/job-id"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclasses.dataclass(frozen=True)
class KubernetesOptions:
    """The kubernetes executor's settings, from ``--executor-option KEY=VALUE``.

    Memory is in GB (GiB) and applies when a request does not set ``resources.memory_gb``.
    """

    image: str = DEFAULT_IMAGE
    gpu_image: str | None = None  # for compute_resource GPU (a CUDA build); else ``image``
    namespace: str | None = None  # else the server's own (in cluster) or the kubeconfig's
    context: str | None = None  # kubeconfig context, outside a cluster
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    image_pull_secret: str | None = None
    env_secret: str | None = None  # a Secret whose keys become env variables (store credentials)
    volume_claim: str | None = None  # a PersistentVolumeClaim mounted at volume_path
    volume_path: str = "/mnt/modelyard"
    num_cpus: float = 1.0
    memory_gb: float = 2.0
    high_memory_gb: float = 32.0
    gpu_memory_gb: float = 16.0
    gpu_resource: str = "nvidia.com/gpu"
    ttl_seconds: int = 3600  # finished Jobs (and their pods' logs) are kept this long
    poll_s: float = 2.0
    pull_grace_s: float = 120.0  # an image that cannot be pulled fails the job after this
    schedule_grace_s: float = 600.0  # a pod no node can take fails the job after this
    lost_after_s: float = 600.0  # the API or the store unreachable this long fails the job
    job_timeout: float | None = None  # --job-timeout, when a request has no timeout_seconds

    @classmethod
    def parse(cls, pairs: Iterable[tuple[str, str]], *, job_timeout: float | None = None
              ) -> KubernetesOptions:
        """Options from ``(key, value)`` pairs; a later key wins.

        Raises:
            ConfigurationError: an unknown key, or a value of the wrong kind.
        """
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "job_timeout"}
        values: dict[str, Any] = {}
        for raw_key, value in pairs:
            key = raw_key.strip().replace("-", "_")
            field = fields.get(key)
            if field is None:
                raise ConfigurationError(
                    f"unknown executor option {raw_key!r} for the kubernetes executor; "
                    f"known options: {', '.join(sorted(fields))}"
                )
            values[key] = _convert(raw_key, str(field.type), value)
        options = cls(**values, job_timeout=job_timeout)
        if options.image_pull_policy not in PULL_POLICIES:
            raise ConfigurationError(
                f"executor option image_pull_policy must be one of {', '.join(PULL_POLICIES)}; "
                f"got {options.image_pull_policy!r}"
            )
        return options


def _convert(key: str, kind: str, value: str) -> Any:
    if kind in ("float", "int"):
        try:
            number = float(value) if kind == "float" else int(value)
        except ValueError:
            raise ConfigurationError(
                f"executor option {key} must be a{'n integer' if kind == 'int' else ' number'}; "
                f"got {value!r}"
            ) from None
        if number <= 0:
            raise ConfigurationError(f"executor option {key} must be positive; got {value!r}")
        return number
    if not value:
        raise ConfigurationError(f"executor option {key} needs a value ({key}=...)")
    return value


def dns_label(text: str, limit: int = 63) -> str:
    """``text`` as an RFC 1123 label: lower-case letters, digits and inner dashes."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())[:limit]
    return label.strip("-") or "x"


def label_value(text: str) -> str:
    """``text`` as a label value: at most 63 of ``[A-Za-z0-9-_.]``, alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def job_name(job_id: str) -> str:
    """The Kubernetes Job's name for a job: ``modelyard-<first 12 characters of its id>``."""
    return dns_label(f"modelyard-{dns_label(job_id)[:12]}")


def job_labels(job_id: str) -> dict[str, str]:
    """Labels that select the Jobs (and pods) of a job."""
    return {APP_LABEL: "modelyard", JOB_ID_LABEL: label_value(job_id)}


def _cpu(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else f"{max(1, math.ceil(n * 1000))}m"


def _memory(gb: float) -> str:
    return f"{int(gb)}Gi" if float(gb).is_integer() else f"{math.ceil(gb * 1024)}Mi"


def resources_for(request: TrainRequest, options: KubernetesOptions
                  ) -> tuple[dict[str, Any], bool]:
    """The container's ``resources`` for a request, and whether it asks for GPUs.

    Raises:
        ConfigurationError: ``resources.num_gpus`` is not a whole number.
    """
    kind, asked = request.compute_resource, request.resources
    default_memory = {
        ComputeResource.CPU: options.memory_gb,
        ComputeResource.HIGH_MEMORY: options.high_memory_gb,
        ComputeResource.GPU: options.gpu_memory_gb,
    }[kind]
    amounts: dict[str, str] = {
        "cpu": _cpu(asked.num_cpus or options.num_cpus),
        "memory": _memory(asked.memory_gb or default_memory),
    }
    gpus = asked.num_gpus if asked.num_gpus is not None else (
        1.0 if kind is ComputeResource.GPU else 0.0)
    if not float(gpus).is_integer():
        raise ConfigurationError(
            f"resources.num_gpus must be a whole number on Kubernetes (devices are not shared); "
            f"got {gpus:g}: ask for {math.ceil(gpus)}"
        )
    if gpus:
        amounts[options.gpu_resource] = str(int(gpus))
    return {"requests": dict(amounts), "limits": dict(amounts)}, bool(gpus)


def job_manifest(spec: WorkerSpec, options: KubernetesOptions) -> dict[str, Any]:
    """A ``batch/v1`` Job running ``spec`` in one pod, never retried.

    The spec travels as JSON in the ``MODELYARD_WORKER_SPEC`` variable; the server-side log file
    and memory rlimit are dropped (the pod's log and the container's memory limit replace them).

    Raises:
        RequestError: the spec's request is not a valid train request.
        ConfigurationError: it asks for something Kubernetes cannot give.
    """
    if spec.step is not None:
        resources, image, timeout, labels, annotations = _step_parts(spec, spec.step, options)
    else:
        resources, image, timeout, labels, annotations = _training_parts(spec, options)
    gpu = options.gpu_resource in resources["limits"]
    in_pod = _for_pod(spec)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["python", "-m", WORKER_MODULE],
        "env": [
            {"name": SPEC_ENV, "value": spec_to_json(in_pod)},
            {"name": "MODELYARD_JOB_ID", "value": spec.job_id},
            {"name": "MODELYARD_ARTIFACTS", "value": spec.artifact_root},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "resources": resources,
    }
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if options.env_secret:
        container["envFrom"] = [{"secretRef": {"name": options.env_secret}}]
    if options.volume_claim:
        container["volumeMounts"] = [{"name": "modelyard", "mountPath": options.volume_path}]
        pod["volumes"] = [
            {"name": "modelyard", "persistentVolumeClaim": {"claimName": options.volume_claim}}
        ]
    if gpu:
        pod["tolerations"] = [
            {"key": options.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
        ]
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if options.image_pull_secret:
        pod["imagePullSecrets"] = [{"name": options.image_pull_secret}]
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # a failed worker is reported, not silently retried
        "ttlSecondsAfterFinished": options.ttl_seconds,
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod},
    }
    if timeout:
        job_spec["activeDeadlineSeconds"] = math.ceil(timeout)
    metadata: dict[str, Any] = {"name": job_name(spec.job_id), "labels": dict(labels),
                                "annotations": dict(annotations)}
    if options.namespace:
        metadata["namespace"] = options.namespace
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


_Parts = tuple[dict[str, Any], str, float | None, dict[str, str], dict[str, str]]


def _training_parts(spec: WorkerSpec, options: KubernetesOptions) -> _Parts:
    """A training job's resources, image, timeout, labels and annotations, from its request."""
    request = parse_request(spec.request)
    resources, gpu = resources_for(request, options)
    image = (options.gpu_image or options.image) if gpu else options.image
    labels = {**job_labels(spec.job_id), COMPONENT_LABEL: "training-job"}
    model = label_value(request.metadata.model_name)
    if model:
        labels[MODEL_LABEL] = model
    annotations = {
        JOB_ID_ANNOTATION: spec.job_id,
        MODEL_ANNOTATION: request.metadata.model_name,
        "modelyard.dev/compute-resource": request.compute_resource.value,
    }
    return resources, image, request.timeout_seconds or options.job_timeout, labels, annotations


def _step_parts(spec: WorkerSpec, step: StepJob, options: KubernetesOptions) -> _Parts:
    """A pipeline step's: the default CPU resources, and its own image when it names one (an
    image with modelyard installed, as the pod runs the same worker entry point).

    Raises:
        ConfigurationError: the image is not among the operator's ``--step-images`` prefixes
            (checked when the pipeline was created, and again here).
    """
    try:
        allowed_image(step.image, spec.step_images)
    except RequestError as exc:
        raise ConfigurationError(f"step {step.step!r}: {exc}") from None
    amounts = {"cpu": _cpu(options.num_cpus), "memory": _memory(options.memory_gb)}
    labels = {**job_labels(spec.job_id), COMPONENT_LABEL: "pipeline-step"}
    annotations = {JOB_ID_ANNOTATION: spec.job_id, "modelyard.dev/pipeline-run": step.run_id,
                   "modelyard.dev/step": step.step}
    return ({"requests": dict(amounts), "limits": dict(amounts)}, step.image or options.image,
            options.job_timeout, labels, annotations)


def _for_pod(spec: WorkerSpec) -> WorkerSpec:
    pack = tuple(_for_pod(one) for one in spec.pack)
    return dataclasses.replace(spec, log_path=None, memory_limit=None, pack=pack)
