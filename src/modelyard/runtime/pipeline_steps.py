"""A pipeline step run as a job, inside the worker: ``validate_data``, ``evaluate``, ``command``.

:func:`run_step` is what :func:`~modelyard.runtime.training.execute` runs for a spec with a
:attr:`~modelyard.protocol.events.WorkerSpec.step`, so a step runs on every executor (a local
process, a Ray task, a Kubernetes pod) and reports the same events as a training job: its steps
(``check``, the step's own, ``artefacts``), then one :class:`~modelyard.protocol.steps.StepResult`
or one error. Data paths resolve under the server's data roots as a train request's do; a
command's program must lie in the operator's ``--step-commands`` folders, checked again here.
The step's artefacts go to its job's folder in the artefact store, written whole or not at all.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from typing import Any

from modelyard.artifacts import ArtifactStore
from modelyard.errors import RequestError
from modelyard.pipelines.blocks import (
    EvaluateParams,
    ValidateDataParams,
    allowed_image,
    allowed_program,
    parse_params,
)
from modelyard.protocol.events import WorkerSpec
from modelyard.protocol.steps import StepJob, StepResult
from modelyard.runtime import step_command, step_evaluate, step_validate
from modelyard.runtime.steps import Report, StepInfo, Steps


def run_step(spec: WorkerSpec, report: Report) -> StepResult:
    """Run the pipeline step in ``spec``, reporting each of its parts through ``report``.

    Raises:
        StepFailed: wrapping whatever went wrong, with the part's name.
    """
    step = spec.step
    if step is None:
        raise RequestError(f"job {spec.job_id} is not a pipeline step (its spec has no step)")
    steps = Steps(spec.job_id, report)
    store = ArtifactStore(spec.artifact_root)
    steps.run("check", check, spec, step)
    if step.type == "validate_data":
        outputs, summary = steps.run("validate_data", validate_data, spec, step)
        files = {"outputs.json": _json(outputs)}
    elif step.type == "evaluate":
        outputs, summary = steps.run("evaluate", evaluate, spec, step, store)
        files = {"metrics.json": _json(outputs["metrics"])}
    else:
        outputs, summary, files = steps.run("command", command, spec, step)
    folder = steps.run("artefacts", write_artefacts, store, spec.job_id, files)
    return StepResult(outputs=outputs, artefacts=folder, summary=summary)


def check(info: StepInfo, spec: WorkerSpec, step: StepJob) -> None:
    """The step's ``with:`` block parses, and what it would run is allowed on this server."""
    parse_params(step.type, step.params)
    allowed_image(step.image, spec.step_images)
    if step.type == "command":
        allowed_program(step.command, spec.step_commands)
    info.update(type=step.type, step=step.step, run_id=step.run_id)


def validate_data(info: StepInfo, spec: WorkerSpec, step: StepJob
                  ) -> tuple[dict[str, Any], str]:
    params = parse_params(step.type, step.params)
    if not isinstance(params, ValidateDataParams):
        raise TypeError(f"validate_data parsed as {type(params).__name__}")
    found = step_validate.validate(params, spec.data_roots)
    info.update(rows=found.rows, positives=found.positives)
    positives = f", {found.positives:,} positives" if found.positives is not None else ""
    return found.outputs(), f"{params.path}: {found.rows:,} rows{positives} pass every rule"


def evaluate(info: StepInfo, spec: WorkerSpec, step: StepJob, store: ArtifactStore
             ) -> tuple[dict[str, Any], str]:
    params = parse_params(step.type, step.params)
    if not isinstance(params, EvaluateParams):
        raise TypeError(f"evaluate parsed as {type(params).__name__}")
    ref = step_evaluate.find_model(params, step.inputs)
    trained = step_evaluate.load(store, ref, spec.workflow_modules, spec.workflow_packages)
    metrics = step_evaluate.evaluate(params, ref, trained, spec.data_roots)
    info.update(model_id=ref.model_id, sets=len(metrics))
    outputs = {"model_id": ref.model_id, "job_id": ref.job_id, "metrics": metrics}
    return outputs, f"{ref.source} evaluated on {', '.join(metrics)}"


def command(info: StepInfo, spec: WorkerSpec, step: StepJob
            ) -> tuple[dict[str, Any], str, dict[str, bytes]]:
    folder = tempfile.mkdtemp(prefix=f"modelyard-step-{spec.job_id}-")
    try:
        ran = step_command.run_command(step, folder, spec.step_commands, spec.job_id)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    info.update(outputs=len(ran.outputs), artefacts=len(ran.artefacts))
    program = (step.command or ["?"])[0]
    summary = (f"{program} exited 0 with {len(ran.outputs)} outputs and "
               f"{len(ran.artefacts)} artefacts")
    return ran.outputs, summary, {"outputs.json": _json(ran.outputs), **{
        f"artifacts/{name}": body for name, body in ran.artefacts.items()}}


def write_artefacts(info: StepInfo, store: ArtifactStore, job_id: str,
                    files: dict[str, bytes]) -> str:
    """The step's files in its job's folder of the artefact store; the folder's path."""
    written = store.write_job_files(job_id, files)
    info.update(files=len(written))
    return store.url(store.job_dir(job_id))


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode()
