"""The kubernetes executor without a cluster.

* Manifests are validated against the Kubernetes 1.30 OpenAPI schemas that kubernetes-validate
  bundles (offline, strict: an unknown field fails), plus the formats those schemas leave out
  (DNS names, label values, quantities).
* The pod-state mapping is checked against API responses in tests/executors/k8s_responses/,
  which are themselves checked to be valid objects that the kubernetes client reads in full.
* The worker entry point runs for real, as a subprocess, and its events file is compared with
  what ``execute`` reports in process.
* The watcher loop runs against the recorded responses through a stand-in for the three API
  calls it makes (read Job, list pods, delete Job); nothing of ours is replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from modelyard.artifacts import ArtifactStore
from modelyard.errors import ConfigurationError
from modelyard.executors.k8s_events import (
    EventFileTailer,
    EventFileWriter,
    events_url,
    parse_events,
)
from modelyard.executors.k8s_manifest import (
    JOB_ID_LABEL,
    SPEC_ENV,
    KubernetesOptions,
    job_manifest,
    job_name,
)
from modelyard.executors.k8s_status import Outcome, Phase, outcome_of
from modelyard.executors.kubernetes import KubernetesExecutor, KubernetesRun
from modelyard.protocol.codec import (
    EventDecodeError,
    event_from_json,
    event_to_json,
    spec_from_json,
)
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    StepFinished,
    StepStarted,
    WorkerEvent,
    WorkerSpec,
    WorkerStarted,
)
from modelyard.protocol.results import ExceptionInfo, FailureKind, JobResult, ModelMeta, failure
from modelyard.runtime.training import execute
from modelyard.settings import Settings
from modelyard.synthetic import example_request, write_payments
from tests.conftest import IN_CI

# CI installs every extra, so there a missing client or validator fails this module instead of
# skipping it.
if IN_CI:
    import kubernetes
    import kubernetes_validate
else:
    kubernetes = pytest.importorskip(
        "kubernetes", reason="kubernetes is not installed (pip install 'modelyard[kubernetes]')")
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install 'modelyard[dev]')")

K8S_VERSION = "1.30"
RESPONSES = Path(__file__).parent / "k8s_responses"
RECORDED_UID = "8d6f2c1a-5b3e-4f7d-9a2c-1e0b3d4c5f6a"  # the Job's uid in every recorded response
JOB_ID = "3f2a9c1e7b4d4c1a9e0f5b6c7d8e9f01"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")  # resource.Quantity


def _spec(job_id: str = JOB_ID, **request: Any) -> WorkerSpec:
    req = example_request("s3://ml-data/payments.parquet")
    req.update(request)
    return WorkerSpec(job_id=job_id, request=req, data_roots=("s3://ml-data/",),
                      artifact_root="s3://ml-artifacts/modelyard", log_path="/srv/logs/x.log",
                      memory_limit=2**30)


def _validate(manifest: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True) == K8S_VERSION


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _env(manifest: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(manifest)["env"]}


# -- manifests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compute", "resources", "expected"),
    [
        ("CPU", {}, {"cpu": "1", "memory": "2Gi"}),
        ("HIGH_MEMORY", {}, {"cpu": "1", "memory": "32Gi"}),
        ("GPU", {}, {"cpu": "1", "memory": "16Gi", "nvidia.com/gpu": "1"}),
        ("CPU", {"num_cpus": 0.5, "memory_gb": 3.5}, {"cpu": "500m", "memory": "3584Mi"}),
        ("HIGH_MEMORY", {"num_cpus": 8, "memory_gb": 96}, {"cpu": "8", "memory": "96Gi"}),
        ("GPU", {"num_gpus": 2, "num_cpus": 4, "memory_gb": 64},
         {"cpu": "4", "memory": "64Gi", "nvidia.com/gpu": "2"}),
    ],
)
def test_manifest_is_a_valid_job_with_the_requested_resources(
    compute: str, resources: dict[str, Any], expected: dict[str, str]
) -> None:
    spec = _spec(compute_resource=compute, resources=resources, timeout_seconds=1800.5)
    manifest = job_manifest(spec, KubernetesOptions.parse([("image", "reg.example/my:1")]))
    _validate(manifest)

    meta = manifest["metadata"]
    assert meta["name"] == "modelyard-3f2a9c1e7b4d" and DNS_LABEL.match(meta["name"])
    for labels in (meta["labels"], manifest["spec"]["template"]["metadata"]["labels"]):
        assert labels[JOB_ID_LABEL] == JOB_ID
        assert labels["app.kubernetes.io/name"] == "modelyard"
        assert labels["modelyard.dev/model"] == "fraud-prediction-model"
        assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())
    assert meta["annotations"]["modelyard.dev/model-name"] == "fraud prediction model"

    job = manifest["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] == 1801
    assert job["ttlSecondsAfterFinished"] > 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = _container(manifest)
    assert container["image"] == "reg.example/my:1"
    assert container["command"] == ["python", "-m", "modelyard.executors.k8s_worker"]
    # Requests equal limits: the Guaranteed QoS class, the last to be evicted.
    assert container["resources"] == {"requests": expected, "limits": expected}
    assert all(QUANTITY.match(q) for q in expected.values())
    gpu = "nvidia.com/gpu" in expected
    tolerations = pod.get("tolerations", [])
    assert (tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists",
                             "effect": "NoSchedule"}]) is gpu

    env = _env(manifest)
    assert env["MODELYARD_ARTIFACTS"] == "s3://ml-artifacts/modelyard"
    # The pod gets the spec less what only makes sense on the server.
    assert spec_from_json(env[SPEC_ENV]) == dataclasses.replace(spec, log_path=None,
                                                               memory_limit=None)


def test_strict_validation_catches_unknown_fields() -> None:
    """The check above is not vacuous: the bundled schemas refuse what the API would."""
    manifest = job_manifest(_spec(), KubernetesOptions())
    _container(manifest)  # exactly one container
    manifest["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="'gpus' was unexpected"):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    manifest = job_manifest(_spec(), KubernetesOptions())
    manifest["spec"]["backoffLimit"] = "none"
    with pytest.raises(kubernetes_validate.ValidationError, match="is not of type 'integer'"):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_manifest_options() -> None:
    options = KubernetesOptions.parse([
        ("image", "reg.example/cpu:1"), ("gpu_image", "reg.example/cuda:1"),
        ("namespace", "ml"), ("service-account", "modelyard-worker"),
        ("image_pull_policy", "Always"), ("image_pull_secret", "regcred"),
        ("env_secret", "s3-credentials"), ("volume_claim", "shared"),
        ("volume_path", "/mnt/shared"), ("gpu_resource", "amd.com/gpu"), ("ttl_seconds", "600"),
    ])
    cpu = job_manifest(_spec(), options)
    gpu = job_manifest(_spec(compute_resource="GPU"), options)
    for manifest in (cpu, gpu):
        _validate(manifest)
        pod = manifest["spec"]["template"]["spec"]
        assert manifest["metadata"]["namespace"] == "ml"
        assert pod["serviceAccountName"] == "modelyard-worker"
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["volumes"] == [{"name": "modelyard",
                                   "persistentVolumeClaim": {"claimName": "shared"}}]
        container = _container(manifest)
        assert container["imagePullPolicy"] == "Always"
        assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
        assert container["volumeMounts"] == [{"name": "modelyard", "mountPath": "/mnt/shared"}]
        assert manifest["spec"]["ttlSecondsAfterFinished"] == 600
    assert _container(cpu)["image"] == "reg.example/cpu:1"
    assert _container(gpu)["image"] == "reg.example/cuda:1"
    assert _container(gpu)["resources"]["limits"]["amd.com/gpu"] == "1"
    assert gpu["spec"]["template"]["spec"]["tolerations"][0]["key"] == "amd.com/gpu"
    assert "activeDeadlineSeconds" not in cpu["spec"]  # no timeout anywhere
    with_default = KubernetesOptions.parse([], job_timeout=90.0)
    assert job_manifest(_spec(), with_default)["spec"]["activeDeadlineSeconds"] == 90


@pytest.mark.parametrize(
    ("job_id", "name"),
    [
        ("3f2a9c1e7b4d4c1a9e0f5b6c7d8e9f01", "modelyard-3f2a9c1e7b4d"),
        ("pack-3f2a9c1e7b4d4c1a9e0f5b6c7d8e9f01", "modelyard-pack-3f2a9c1"),
        ("Job_ID.With Odd--Chars", "modelyard-job-id-with"),
        ("-----", "modelyard-x"),
    ],
)
def test_names_and_labels_are_valid_for_any_job_id(job_id: str, name: str) -> None:
    assert job_name(job_id) == name and DNS_LABEL.match(name) and len(name) <= 63
    manifest = job_manifest(_spec(job_id), KubernetesOptions())
    _validate(manifest)
    assert all(LABEL_VALUE.match(v) for v in manifest["metadata"]["labels"].values())
    assert manifest["metadata"]["annotations"]["modelyard.dev/job-id"] == job_id


def test_packed_specs_reach_the_pod_whole() -> None:
    members = (_spec("a" * 32), _spec("b" * 32))
    pack = dataclasses.replace(members[0], job_id="pack-" + "a" * 32, pack=members)
    in_pod = spec_from_json(_env(job_manifest(pack, KubernetesOptions()))[SPEC_ENV])
    assert in_pod.job_ids() == ["a" * 32, "b" * 32]
    assert all(isinstance(s, WorkerSpec) and s.log_path is None for s in in_pod.pack)


def test_fractional_gpus_and_bad_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"num_gpus must be a whole number.*got 0.5"):
        job_manifest(_spec(compute_resource="GPU", resources={"num_gpus": 0.5}),
                     KubernetesOptions())
    with pytest.raises(ConfigurationError, match="unknown executor option 'imgae'.*image"):
        KubernetesOptions.parse([("imgae", "x")])
    with pytest.raises(ConfigurationError, match="memory_gb must be a number; got 'lots'"):
        KubernetesOptions.parse([("memory_gb", "lots")])
    with pytest.raises(ConfigurationError, match="image_pull_policy must be one of"):
        KubernetesOptions.parse([("image_pull_policy", "Sometimes")])


def test_executor_refuses_an_artefact_store_the_pods_cannot_reach(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, executor="kubernetes")
    with pytest.raises(ConfigurationError, match=r"needs an artefact store .*--artifacts s3://"):
        KubernetesExecutor(settings)


# -- pod states -> outcomes, against recorded API responses ----------------------------------


def _recorded(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = json.loads((RESPONSES / f"{name}.json").read_text())
    return data["job"], data["pods"]["items"]


EXPECTED: dict[str, tuple[Phase, str, str, str]] = {
    # recorded response: (phase, Kubernetes reason, exception_info type, message pattern)
    "pending_container_creating": (Phase.PENDING, "ContainerCreating", "", ""),
    "pending_unschedulable": (
        Phase.STUCK, "Unschedulable", "Unschedulable",
        r"no node can run the worker pod .*Insufficient nvidia.com/gpu.*num_gpus.*device plugin"),
    "pending_image_pull_backoff": (
        Phase.STUCK, "ImagePullBackOff", "ImagePullError",
        r"image 'registry.example.com/ml/modelyard:0.1.0' cannot be pulled.*image_pull_secret"),
    "pending_err_image_pull": (
        Phase.STUCK, "ErrImagePull", "ImagePullError",
        r"cannot be pulled \(ErrImagePull: .*not found"),
    "running": (Phase.RUNNING, "Running", "", ""),
    "succeeded": (Phase.SUCCEEDED, "Complete", "", ""),
    "failed_oomkilled": (
        Phase.FAILED, "OOMKilled", "OutOfMemory",
        r"ran out of memory.*OOMKilled at its limit of 2Gi; raise resources.memory_gb"),
    "failed_error_exit": (
        Phase.FAILED, "Error", "WorkerCrashed",
        r"exited with code 1 \(Error\) before reporting a result; see its log: "
        r"kubectl logs -n ml job/modelyard-3f2a9c1e7b4d"),
    "failed_deadline_exceeded": (
        Phase.FAILED, "DeadlineExceeded", "JobTimeout",
        r"timed out: .*activeDeadlineSeconds \(3600 s\).*raise timeout_seconds"),
    "failed_evicted": (
        Phase.FAILED, "Evicted", "PodEvicted",
        r"evicted by Kubernetes: The node was low on resource: memory.*resources.memory_gb"),
}


# The failure kind of each error type: a pod that never ran is the executor's failure to start
# the worker; one that ran and ended without a result crashed, ran out of memory or timed out.
KIND_OF_ERROR = {
    "Unschedulable": FailureKind.executor_error,
    "ImagePullError": FailureKind.executor_error,
    "OutOfMemory": FailureKind.out_of_memory,
    "WorkerCrashed": FailureKind.worker_crashed,
    "JobTimeout": FailureKind.timeout,
    "PodEvicted": FailureKind.worker_lost,
}
EXIT_CODES = {"failed_oomkilled": 137, "failed_error_exit": 1}


def test_every_recorded_response_has_an_expectation() -> None:
    assert sorted(p.stem for p in RESPONSES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_responses_are_api_objects(name: str) -> None:
    """Valid Job and Pod objects, every field known to the kubernetes client's models."""
    job, pods = _recorded(name)
    client = kubernetes.client.ApiClient()
    for obj, model in [(job, "V1Job"), *((pod, "V1Pod") for pod in pods)]:
        _validate(obj)
        # The kubernetes client of requirements/dev.lock (37.x) takes the response text and its
        # content type; 36.x and older took a response object.
        back = client.sanitize_for_serialization(
            client.deserialize(json.dumps(obj), model, "application/json"))
        text = json.dumps(back, default=str).replace("+00:00", "Z")
        assert json.loads(text) == _without_nulls(obj)


def _without_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_nulls(v) for v in obj]
    return obj


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome_of_recorded_responses(name: str) -> None:
    phase, reason, error_type, message = EXPECTED[name]
    outcome = outcome_of(*_recorded(name))
    assert (outcome.phase, outcome.reason) == (phase, reason)
    if message:
        assert outcome.error_type == error_type
        assert re.search(message, outcome.message), outcome.message
        info = outcome.exception_info()
        assert info.type == error_type and info.message == outcome.message
        assert info.kind is KIND_OF_ERROR[error_type]
        assert info.exitcode == EXIT_CODES.get(name)


def test_pods_tell_before_the_job_controller_does() -> None:
    """A pod that failed decides at once, before the Job's Failed condition appears."""
    job, pods = _recorded("failed_oomkilled")
    job["status"] = {"active": 1, "ready": 0, "startTime": job["status"]["startTime"]}
    assert outcome_of(job, pods).reason == "OOMKilled"
    job, pods = _recorded("succeeded")
    job["status"] = {"active": 1, "ready": 0}
    assert outcome_of(job, pods).phase is Phase.SUCCEEDED


def test_a_failed_job_without_pods_or_a_deleted_job() -> None:
    job, _ = _recorded("failed_error_exit")
    outcome = outcome_of(job, [])
    assert outcome.phase is Phase.FAILED
    assert re.search(r"BackoffLimitExceeded.*probably deleted or evicted", outcome.message)
    gone = outcome_of(None, [])
    assert gone.phase is Phase.GONE and "was deleted" in gone.message
    job, _ = _recorded("running")
    no_pod = outcome_of(job, [])  # fine for a moment; for long, something refuses the pod
    assert (no_pod.phase, no_pod.reason) == (Phase.STUCK, "NoPod")
    assert "ResourceQuota" in no_pod.message


def test_an_invalid_image_name_fails_at_once() -> None:
    job, pods = _recorded("pending_image_pull_backoff")
    waiting = pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    waiting.update(reason="InvalidImageName",
                   message='Failed to apply default image tag "Modelyard": invalid reference')
    outcome = outcome_of(job, pods)
    assert (outcome.phase, outcome.error_type) == (Phase.FAILED, "ImagePullError")


# -- events: codec and file ----------------------------------------------------------------------


EVENTS: list[WorkerEvent] = [
    WorkerStarted("j1", 7, "modelyard-3f2a9c1e7b4d-x7k2p"),
    StepStarted("j1", "load", 1717405923.5),
    StepFinished("j1", "load", 1717405923.5, 0.25, {"files": 1, "rows": np.int64(2000)}),
    JobFinished("j1", JobResult(
        model_id="sha256:" + "0" * 64, metrics={"roc_auc": np.float32(0.5), "notes": []},
        evaluation_holdout_data_path="s3://b/jobs/j1/scores.tsv",
        evaluation_holdout_label_path="s3://b/jobs/j1/labels.tsv",
        metrics_path="s3://b/jobs/j1/metrics.json", provenance_path="s3://b/jobs/j1/p.json",
        row_counts={"train": 10}, workflow_class="w:W", data_digest="sha256:1",
        model=ModelMeta("sha256:" + "0" * 64, "sklearn", "w:W", ["a"], "y", "binary"),
        request_hash="h")),
    JobErrored("j2", failure(FailureKind.data_error, "no rows — none", step="filter")),
]


def test_events_round_trip_through_json() -> None:
    for event in EVENTS:
        line = event_to_json(event)
        assert "\n" not in line
        back = event_from_json(line)
        assert type(back) is type(event)
        assert json.loads(event_to_json(back)) == json.loads(line)
    assert event_from_json(event_to_json(EVENTS[0])) == EVENTS[0]
    with pytest.raises(EventDecodeError, match="not a worker event"):
        event_from_json('{"event": "Surprise", "job_id": "j1"}')
    with pytest.raises(EventDecodeError, match="not a JSON event"):
        event_from_json("Traceback (most recent call last):")


def test_parse_events_reads_only_complete_lines() -> None:
    lines = [event_to_json(e).encode() + b"\n" for e in EVENTS]
    data = lines[0] + lines[1] + lines[2][:10]  # the third is still being written
    found, offset = parse_events(data, 0)
    assert [type(e) for e in found] == [WorkerStarted, StepStarted]
    assert offset == len(lines[0] + lines[1])
    assert parse_events(data, offset) == ([], offset)
    found, offset = parse_events(b"".join(lines), offset)
    assert [type(e) for e in found] == [StepFinished, JobFinished, JobErrored]
    with pytest.raises(EventDecodeError, match="shrank"):
        parse_events(b"", offset)


@pytest.mark.parametrize("where", ["local", "object store"])
def test_event_file_writer_and_tailer(where: str, tmp_path: Path) -> None:
    root = str(tmp_path / "artifacts") if where == "local" else f"memory://{uuid.uuid4().hex}"
    tailer = EventFileTailer(root, "j1")
    assert tailer.poll() == []  # no file yet
    writer = EventFileWriter(root, "j1")
    seen: list[WorkerEvent] = []
    for event in EVENTS[:4]:
        writer.append(event)
        seen += tailer.poll()
    assert [event_to_json(e) for e in seen] == [event_to_json(e) for e in EVENTS[:4]]
    assert tailer.poll() == []
    assert events_url(root, "j1").endswith("/runs/j1/events.jsonl")
    tailer.reset()  # as before a new attempt of the same job
    assert tailer.poll() == [] and tailer.offset == 0


# -- the worker entry point, end to end (no cluster) -------------------------------------------


@pytest.fixture(scope="module")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_payments(tmp_path_factory.mktemp("k8s-data") / "payments.parquet",
                          rows=3_000, merchants=30)


def _local_spec(payments: Path, artifacts: Path, job_id: str) -> WorkerSpec:
    request = example_request(str(payments))
    request["train"] = {**request["train"], "custom_params": {"max_iter": 20}}  # type: ignore[dict-item]
    return WorkerSpec(job_id=job_id, request=request, data_roots=(str(payments.parent),),
                      artifact_root=str(artifacts))


def _shape(event: WorkerEvent) -> tuple[str, str, tuple[str, ...]]:
    """What two runs of one job must share: kind, step and the fields reported."""
    name = getattr(event, "name", "")
    result = getattr(event, "result", None)
    fields = result.to_json() if result is not None else getattr(event, "info", None) or {}
    return type(event).__name__, name, tuple(sorted(fields))


def test_worker_entry_point_reports_through_the_events_file(payments: Path, tmp_path: Path
                                                            ) -> None:
    artifacts = tmp_path / "artifacts"
    pod_spec = _local_spec(payments, artifacts, uuid.uuid4().hex)
    manifest = job_manifest(dataclasses.replace(pod_spec, artifact_root="s3://unused"),
                            KubernetesOptions())
    env = _env(manifest)
    env[SPEC_ENV] = env[SPEC_ENV].replace('"s3://unused"', json.dumps(str(artifacts)))
    proc = subprocess.run(
        [sys.executable, "-m", "modelyard.executors.k8s_worker"],
        # One native thread on both sides: histogram sums in another order can move a split,
        # and the bytes (so the model id) must match exactly.
        env={**os.environ, **env, "MODELYARD_ARTIFACTS": str(artifacts), "OMP_NUM_THREADS": "1",
             "OPENBLAS_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "step train: done" in proc.stderr  # the worker's log is the pod's log
    from_pod = EventFileTailer(str(artifacts), pod_spec.job_id).poll()

    in_process: list[WorkerEvent] = []
    with threadpool_limits(limits=1):
        execute(_local_spec(payments, artifacts, uuid.uuid4().hex), in_process.append)

    assert [_shape(e) for e in from_pod] == [_shape(e) for e in in_process]
    assert isinstance(from_pod[0], WorkerStarted) and isinstance(from_pod[-1], JobFinished)
    assert {e.job_id for e in from_pod} == {pod_spec.job_id}
    result, expected = from_pod[-1].result, in_process[-1].result
    assert isinstance(result, JobResult) and isinstance(expected, JobResult)
    # Floats approximately (pytest.approx takes numbers only since pytest 9.2), the rest exactly.
    numbers = {k for k, v in expected.metrics.items() if isinstance(v, float)}
    assert {k: result.metrics[k] for k in numbers} == pytest.approx(
        {k: expected.metrics[k] for k in numbers})
    assert {k: v for k, v in result.metrics.items() if k not in numbers} == {
        k: v for k, v in expected.metrics.items() if k not in numbers}
    # The pod's model is stored under its content address (byte equality with the in-process
    # run is not asserted: the suite's earlier in-process tests leave native thread settings
    # that can move a histogram split).
    stored = ArtifactStore(str(artifacts)).get_bytes(result.model_id)
    assert hashlib.sha256(stored).hexdigest() == result.model_id.split(":")[1]
    assert (artifacts / "jobs" / pod_spec.job_id / "metrics.json").exists()


def test_worker_entry_point_without_a_spec_says_why() -> None:
    env = {k: v for k, v in os.environ.items() if k != SPEC_ENV}
    proc = subprocess.run([sys.executable, "-m", "modelyard.executors.k8s_worker"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{SPEC_ENV} is not set" in proc.stderr


# -- the watcher, against recorded responses ------------------------------------------------


class _Answer:
    """What the client returns with ``_preload_content=False``: the server's JSON bytes."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.data = json.dumps(obj).encode()

    def release_conn(self) -> None:
        pass


class RecordedCluster:
    """Stands in for the Kubernetes API calls the watcher makes, replaying recorded answers.

    Each poll reads the Job then lists its pods; the list call moves on to the next answer
    (the last one repeats).
    """

    def __init__(self, *names: str) -> None:
        self.answers = [_recorded(n) for n in names]
        self.deleted: list[str] = []

    def read_namespaced_job(self, name: str, namespace: str, **_: Any) -> _Answer:
        return _Answer(self.answers[0][0])

    def list_namespaced_pod(self, namespace: str, **_: Any) -> _Answer:
        pods = self.answers.pop(0)[1] if len(self.answers) > 1 else self.answers[0][1]
        return _Answer({"apiVersion": "v1", "kind": "PodList", "items": pods})

    def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> _Answer:
        self.deleted.append(name)
        return _Answer({"kind": "Status", "status": "Success"})


def _watched(tmp_path: Path, cluster: RecordedCluster, *written: WorkerEvent,
             pack: tuple[str, ...] = ()
             ) -> tuple[KubernetesExecutor, KubernetesRun, list[WorkerEvent]]:
    shared = tmp_path / "shared"
    settings = Settings.load(
        home=tmp_path / "home", artifact_root=str(shared / "artifacts"), executor="kubernetes",
        executor_options=["namespace=ml", "volume_claim=shared", f"volume_path={shared}",
                          "poll_s=0.01", "pull_grace_s=0.1", "schedule_grace_s=0.1"],
    )
    executor = KubernetesExecutor(settings)
    executor._api = executor._batch = executor._core = cluster  # the API, not our code
    spec = _spec("j1")
    if pack:
        spec = dataclasses.replace(spec, job_id="pack-j1", pack=tuple(_spec(j) for j in pack))
    spec = dataclasses.replace(spec, artifact_root=settings.artifact_root)
    writer = EventFileWriter(spec.artifact_root, spec.job_id)
    for event in written:
        writer.append(event)
    relayed: list[WorkerEvent] = []
    run = KubernetesRun(executor, spec, job_name("j1"), RECORDED_UID,
                        "batch.kubernetes.io/controller-uid=" + RECORDED_UID, relayed.append)
    return executor, run, relayed


def _terminal(events: list[WorkerEvent]) -> list[WorkerEvent]:
    return [e for e in events if isinstance(e, JobFinished | JobErrored)]


def test_watcher_relays_the_events_file_in_order(tmp_path: Path) -> None:
    cluster = RecordedCluster("pending_container_creating", "running", "succeeded")
    executor, run, relayed = _watched(tmp_path, cluster, *EVENTS[:4])
    executor._watch(run)
    assert [event_to_json(e) for e in relayed] == [event_to_json(e) for e in EVENTS[:4]]
    assert not cluster.deleted  # a finished Job stays until its TTL, for its log


def test_watcher_reports_a_pod_that_ended_without_a_result(tmp_path: Path) -> None:
    cluster = RecordedCluster("running", "succeeded")
    executor, run, relayed = _watched(tmp_path, cluster, *EVENTS[:2])
    executor._watch(run)
    assert [type(e) for e in relayed] == [WorkerStarted, StepStarted, JobErrored]
    assert re.search(r"exited 0 without reporting a result in .*events.jsonl",
                     relayed[-1].exception_info.message)

    cluster = RecordedCluster("running", "failed_oomkilled")
    executor, run, relayed = _watched(tmp_path / "2", cluster, *EVENTS[:1])
    executor._watch(run)
    assert [e.exception_info.type for e in _terminal(relayed)] == ["OutOfMemory"]


def test_a_dead_pack_pod_fails_the_job_it_ran_and_marks_the_rest_not_started(
    tmp_path: Path
) -> None:
    cluster = RecordedCluster("running", "failed_oomkilled")
    executor, run, relayed = _watched(tmp_path, cluster, *EVENTS[:4],
                                      WorkerStarted("j2", 7, "pod"), pack=("j1", "j2", "j3"))
    executor._watch(run)
    outcome = {e.job_id: e for e in _terminal(relayed)}
    assert isinstance(outcome["j1"], JobFinished)
    assert outcome["j2"].exception_info.type == "OutOfMemory"
    assert outcome["j3"].exception_info.type == "NotStarted"
    assert "while it ran job j2" in outcome["j3"].exception_info.message


def test_watcher_gives_up_on_a_stuck_pod_and_deletes_its_job(tmp_path: Path) -> None:
    executor, run, relayed = _watched(tmp_path, cluster := RecordedCluster(
        "pending_image_pull_backoff"))
    executor._watch(run)
    (errored,) = _terminal(relayed)
    info = errored.exception_info
    assert info.type == "ImagePullError" and "gave up after 0.1 s" in info.message
    assert cluster.deleted == ["modelyard-j1"]


def test_cancel_deletes_the_job_and_reports_once(tmp_path: Path) -> None:
    executor, run, relayed = _watched(tmp_path, cluster := RecordedCluster("running"), EVENTS[0])
    watcher = threading.Thread(target=executor._watch, args=(run,))
    watcher.start()
    run.cancel()
    run.cancel()
    watcher.join(10)
    assert not watcher.is_alive()
    assert cluster.deleted == ["modelyard-j1"]
    assert [e.exception_info.type for e in _terminal(relayed)] == ["JobCancelled"]


def test_outcome_exception_info_is_plain() -> None:
    info = Outcome(Phase.FAILED, "Evicted", "m", "PodEvicted").exception_info()
    assert (info.kind, info.type, info.message) == (FailureKind.worker_lost, "PodEvicted", "m")
    assert ExceptionInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
