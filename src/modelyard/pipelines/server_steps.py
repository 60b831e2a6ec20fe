"""The steps the runner does itself: submit a train job and read what it registered, decide
on its versions (``validate_model``), and move them (``deploy``).

``validate_model`` applies :mod:`modelyard.registry.policy` as the approval gate does: the
candidate must beat production by the policy's margin on the same rows (or there is no
production yet), and pass the guard rails. ``deploy`` to production goes through
:func:`modelyard.registry.store.set_stage`, the gate and audit a person's move passes too;
``approval`` leaves each version waiting for a person, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from modelyard.errors import Conflict, RequestError
from modelyard.jobs import fleet
from modelyard.jobs import store as jobs
from modelyard.jobs.tables import JobRow
from modelyard.pipelines.server_params import DeployWith, ValidateModelWith, parse_with
from modelyard.pipelines.spec import StepSpec
from modelyard.registry import policy as gate
from modelyard.registry import store as registry
from modelyard.registry.stages import Stage
from modelyard.request.models import TrainRequest
from modelyard.settings import Settings


class StepFailed(Exception):
    """A server-side step failed; the message says why and what to do."""


@dataclass(frozen=True)
class Outcome:
    """What a step that ended well leaves: its outputs and one line for a person."""

    outputs: dict[str, Any]
    summary: str


def narrowed(request: TrainRequest, tenant: str | None) -> TrainRequest:
    """A fleet's request trained for ``tenant`` alone (a run of one tenant); else as it is.

    Raises:
        RequestError: a tenant was given, but the request trains no fleet.
    """
    if tenant is None:
        return request
    if request.tenants is None:
        raise RequestError(f"this run is for tenant {tenant!r}, but the train request of "
                           f"{request.metadata.model_name!r} has no tenants block (it trains "
                           "one model); run the pipeline without --tenant")
    tenants = request.tenants.model_copy(update={"include": [tenant]})
    return request.model_copy(update={"tenants": tenants})


def submit_train(session: Session, settings: Settings, request: TrainRequest,
                 submitted_by: str | None) -> JobRow:
    """Queue the train job as ``POST /train`` does (a fleet: with its global model). Does not
    commit."""
    job = jobs.create_job(session, request, executor=settings.executor,
                          logs_dir=settings.logs_dir, commit=False, submitted_by=submitted_by)
    if job.kind == "fleet":
        fleet.queue_global(session, job)
    return job


def train_outcome(session: Session, job: JobRow) -> Outcome:
    """A succeeded train job's outputs: its id, the model, the versions it registered."""
    ids = [job.id, *jobs.child_ids(session, job.id)] if job.kind == "fleet" else [job.id]
    versions = {v.tenant: v.version for v in registry.versions_of_jobs(session, ids)}
    outputs: dict[str, Any] = {"job_id": job.id, "model_name": job.model_name,
                               "versions": versions}
    if job.model_id is not None:
        outputs["model_id"] = job.model_id
    shown = ", ".join(f"{t}: v{v}" for t, v in sorted(versions.items())) or "none"
    return Outcome(outputs, f"job {job.id} trained {job.model_name!r}; versions {shown}")


def validate_model(session: Session, step: StepSpec, inputs: dict[str, Any]) -> Outcome:
    """Each version the train step registered against production, on the same rows.

    Raises:
        StepFailed: no candidate passes (``require_all``: one does not), naming the reasons.
    """
    params: ValidateModelWith = parse_with(step, ValidateModelWith)
    model, versions = _versions(step, inputs, "versions")
    policy = gate.read_policy(session, model)
    passed: dict[str, int] = {}
    refused: dict[str, str] = {}
    for tenant, number in sorted(versions.items()):
        row = registry.read_version(session, model, number, tenant)
        production = registry.production_version(session, model, tenant)
        if production is not None and production.id == row.id:
            passed[tenant] = number  # promoted already (auto_promote, a fleet's graduation)
            continue
        decision = (gate.beats_production(row, production, policy) if production is not None
                    else gate.Decision(True, "no production version yet"))
        rails = gate.guard_rails(row, production, policy)
        if decision.allowed and rails is None:
            passed[tenant] = number
        else:
            refused[tenant] = "; ".join(r for r in (
                None if decision.allowed else decision.reason, rails) if r)
    outputs = {"model_name": model, "passed": passed, "refused": refused}
    if refused and (params.require_all or not passed):
        raise StepFailed(f"{'no' if not passed else 'not every'} candidate of {model!r} "
                         "passed: " + "; ".join(
                             f"tenant {t} version {versions[t]}: {why}"
                             for t, why in refused.items()) + " (see the model's policy: "
                         f"GET /models/{model}/policy)")
    return Outcome(outputs, f"{len(passed)} of {len(versions)} versions of {model!r} passed")


def deploy(session: Session, step: StepSpec, inputs: dict[str, Any], actor: str) -> Outcome:
    """Move the versions that passed (or, after a train step alone, those it registered).

    Raises:
        StepFailed: production was asked and the model's policy does not allow it.
    """
    params: DeployWith = parse_with(step, DeployWith)
    model, versions = _versions(step, inputs, "passed")
    done: dict[str, int] = {}
    for tenant, number in sorted(versions.items()):
        row = registry.read_version(session, model, number, tenant)
        if params.to == "approval":
            continue
        target = Stage(params.to)
        # Already serving (auto-promoted, or a fleet's graduation): deploying it to shadow
        # must not demote it.
        if row.stage in (target.value, Stage.production.value):
            done[tenant] = number
            continue
        try:
            registry.set_stage(session, model, number, target, actor=actor,
                               reason=f"deployed by {actor}", tenant=tenant)
        except Conflict as exc:
            raise StepFailed(f"deploy to {params.to}: {exc}") from None
        done[tenant] = number
    if params.to == "approval":
        waiting = ", ".join(f"version {v} of {model!r} (tenant {t})"
                            for t, v in sorted(versions.items()))
        return Outcome({"model_name": model, "awaiting_approval": versions},
                       f"waiting for a person's approval: {waiting}; approve with `modelyard "
                       f"models approve {model} VERSION` (--tenant for a tenant's)")
    return Outcome({"model_name": model, "stage": params.to, "versions": done},
                   f"{len(done)} versions of {model!r} in {params.to}")


def _versions(step: StepSpec, inputs: dict[str, Any], prefer: str) -> tuple[str, dict[str, int]]:
    """The model and ``{tenant: version}`` a step works on: the ``prefer`` outputs of the steps
    it needs (``passed``: validate_model's), else a train step's ``versions``."""
    for key in (prefer, "versions"):
        for outputs in inputs.values():
            if isinstance(outputs, dict) and isinstance(outputs.get(key), dict) \
                    and "model_name" in outputs:
                return str(outputs["model_name"]), {
                    str(t): int(v) for t, v in outputs[key].items()}
    raise StepFailed(f"step {step.name!r} ({step.type}) has no versions to work on: it must "
                     "need a train step (or a validate_model step after one); add it to its "
                     "needs")
