"""A pipeline step on the Kubernetes executor: its image reaches the pod (only an allowed one),
and the pod's entry point runs the step and reports it through the events file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from modelyard.errors import ConfigurationError
from modelyard.executors.k8s_events import EventFileTailer
from modelyard.executors.k8s_manifest import SPEC_ENV, KubernetesOptions, job_manifest
from modelyard.protocol.codec import spec_from_json
from modelyard.protocol.events import JobFinished, StepStarted, WorkerSpec, WorkerStarted
from modelyard.protocol.steps import StepJob, StepResult
from tests.conftest import IN_CI

if IN_CI:
    import kubernetes_validate
else:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install 'modelyard[dev]')")


def _spec(image: str | None) -> WorkerSpec:
    step = StepJob(run_id="r1", step="score in R", type="command", params={"k": 1},
                   inputs={"check": {"rows": 10}}, image=image, command=["score.R"])
    return WorkerSpec(job_id="3f2a9c1e7b4d4c1a9e0f5b6c7d8e9f01", request=step.to_json(),
                      data_roots=("s3://ml-data/",), artifact_root="s3://ml-artifacts/m",
                      log_path="/srv/logs/x.log", step=step,
                      step_commands=("/opt/steps",), step_images=("reg.example/steps/",))


def test_the_manifest_runs_the_step_in_its_image() -> None:
    options = KubernetesOptions.parse([("image", "reg.example/modelyard:1")], job_timeout=600)
    manifest = job_manifest(_spec("reg.example/steps/r-base:4.3"), options)
    assert kubernetes_validate.validate(manifest, "1.30", strict=True) == "1.30"
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "reg.example/steps/r-base:4.3"
    assert container["command"] == ["python", "-m", "modelyard.executors.k8s_worker"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modelyard.dev/step"] == "score in R"
    assert manifest["spec"]["activeDeadlineSeconds"] == 600
    env = {e["name"]: e["value"] for e in container["env"]}
    in_pod = spec_from_json(env[SPEC_ENV])
    assert in_pod.step == _spec("reg.example/steps/r-base:4.3").step and in_pod.log_path is None

    # Without an image of its own, a step runs in the executor's.
    (plain,) = job_manifest(_spec(None), options)["spec"]["template"]["spec"]["containers"]
    assert plain["image"] == "reg.example/modelyard:1"


def test_an_image_outside_the_allowed_prefixes_is_refused_again_by_the_executor() -> None:
    with pytest.raises(ConfigurationError, match=r"step 'score in R': image: 'docker.io/evil/x:1' "
                                                 "does not start with an allowed prefix"):
        job_manifest(_spec("docker.io/evil/x:1"), KubernetesOptions())


def test_the_pods_entry_point_runs_a_command_step(tmp_path: Path) -> None:
    commands, artifacts = tmp_path / "commands", tmp_path / "artifacts"
    commands.mkdir()
    program = commands / "count.sh"
    program.write_text('#!/bin/sh\necho "counting in the pod"\n'
                       'printf \'{"rows": 42}\' > "$MODELYARD_OUTPUTS"\n')
    program.chmod(stat.S_IRWXU)
    step = StepJob(run_id="r1", step="count", type="command", params={}, inputs={},
                   command=["count.sh"])
    spec = WorkerSpec(job_id=uuid.uuid4().hex, request=step.to_json(),
                      data_roots=(str(tmp_path),), artifact_root=str(artifacts), step=step,
                      step_commands=(str(commands),))
    env = {e["name"]: e["value"]
           for e in job_manifest(spec, KubernetesOptions())["spec"]["template"]["spec"][
               "containers"][0]["env"]}
    proc = subprocess.run([sys.executable, "-m", "modelyard.executors.k8s_worker"],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "counting in the pod" in proc.stdout  # the program's output is the pod's log
    events = EventFileTailer(str(artifacts), spec.job_id).poll()
    assert isinstance(events[0], WorkerStarted) and isinstance(events[-1], JobFinished)
    assert [e.name for e in events if isinstance(e, StepStarted)] == [
        "check", "command", "artefacts"]
    result = events[-1].result
    assert isinstance(result, StepResult) and result.outputs == {"rows": 42}
