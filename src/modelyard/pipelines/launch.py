"""Start one step whose needs have succeeded: a cache hit, a job, or a step the server runs.

The step's cache key is computed first (:mod:`modelyard.pipelines.cache`); a succeeded step
with the same key lends its outputs, unless the step must run again (a rerun's ``--from``).
Train steps become train jobs, ``validate_data``/``evaluate``/``command`` steps jobs of kind
``step`` on the server's executor (with the run's image and command overrides), and
``validate_model``/``deploy`` run here (:mod:`modelyard.pipelines.server_steps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.orm import Session

from modelyard.jobs.step_jobs import create_step_job
from modelyard.pipelines import blocks, cache
from modelyard.pipelines.server_params import train_request
from modelyard.pipelines.server_steps import (
    Outcome,
    StepFailed,
    deploy,
    narrowed,
    submit_train,
    validate_model,
)
from modelyard.pipelines.spec import StepSpec
from modelyard.pipelines.store import cached_step
from modelyard.pipelines.tables import PipelineRunRow
from modelyard.protocol.steps import StepJob, StepType
from modelyard.settings import Settings


@dataclass(frozen=True)
class Launched:
    """How a step started: a job to wait for, or already an outcome (or a failure)."""

    cache_key: str | None = None
    job_id: str | None = None
    outcome: Outcome | None = None
    failed: str | None = None
    cached_from: str | None = None  # the run whose outputs a cache hit reused


def launch_step(session: Session, settings: Settings, run: PipelineRunRow, step: StepSpec,
                inputs: dict[str, Any], *, use_cache: bool) -> Launched:
    """Start ``step`` of ``run`` with the outputs of the steps it needs (``inputs``).

    Raises:
        ModelyardError: what the step names cannot run (a request file, a command or an
            image the server does not allow); the step fails with the message.
    """
    actor = f"pipeline {run.pipeline_name} (run {run.id})"
    if step.type in cache.UNCACHED:
        try:
            outcome = (validate_model(session, step, inputs) if step.type == "validate_model"
                       else deploy(session, step, inputs, actor))
        except StepFailed as exc:
            return Launched(failed=str(exc))
        return Launched(outcome=outcome)
    if step.type == "train":
        request = narrowed(train_request(step, settings.data_roots), run.tenant or None)
        params = request.model_dump(mode="json")
        code = cache.workflow_code(request.train.workflow_name, settings.workflow_modules)
    else:
        override = (run.overrides or {}).get(step.name, {})
        image, command = override.get("image", step.image), override.get("command",
                                                                         step.command)
        blocks.check_image(image, settings)
        if step.type == "command":
            blocks.check_command(command, settings)
        params, code = step.with_, {"image": image, "command": command}
    key = cache.cache_key(step.type, params, inputs, code, settings.data_roots)
    hit = cached_step(session, key) if use_cache else None
    if hit is not None and hit.outputs is not None:
        return Launched(cache_key=key, cached_from=hit.run_id, outcome=Outcome(
            hit.outputs, f"cached: the outputs of run {hit.run_id} (same inputs, code and "
                         "data)"))
    if step.type == "train":
        job = submit_train(session, settings, request, run.started_by)
    else:
        job = create_step_job(
            session, StepJob(run_id=run.id, step=step.name, type=cast(StepType, step.type),
                             params=dict(step.with_), inputs=inputs, image=image,
                             command=command),
            pipeline=run.pipeline_name, executor=settings.executor, logs_dir=settings.logs_dir,
            submitted_by=run.started_by, commit=False)
    return Launched(cache_key=key, job_id=job.id)
