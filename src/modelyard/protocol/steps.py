"""A pipeline step run as a job: what the worker is told (:class:`StepJob`) and what it answers
(:class:`StepResult`).

A pipeline's ``validate_data``, ``evaluate`` and ``command`` steps each run as one job of the
job system (kind ``step``), on whichever executor the server uses. The server writes the
:class:`StepJob` as the job's stored request and hands it to the worker in
:attr:`~modelyard.protocol.events.WorkerSpec.step`; the worker ends with a
:class:`StepResult` in its :class:`~modelyard.protocol.events.JobFinished`, stored as the job's
``result``. Like the rest of :mod:`modelyard.protocol`, this imports only the standard library.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

StepType = Literal["validate_data", "evaluate", "command"]
STEP_TYPES: tuple[StepType, ...] = ("validate_data", "evaluate", "command")


@dataclasses.dataclass(frozen=True)
class StepJob:
    """One step of one pipeline run, as a job runs it."""

    run_id: str
    step: str  # the step's name in the pipeline
    type: StepType
    params: dict[str, Any]  # the step's ``with:`` block
    inputs: dict[str, Any]  # the outputs of the steps it needs, by step name
    image: str | None = None  # the container image it runs in (the Kubernetes executor)
    command: list[str] | None = None  # a ``command`` step's argv

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> StepJob:
        kind = str(obj.get("type"))
        if kind not in STEP_TYPES:
            raise ValueError(f"step type {kind!r} is not one of {', '.join(STEP_TYPES)}")
        command = obj.get("command")
        return cls(run_id=str(obj["run_id"]), step=str(obj["step"]), type=kind,
                   params=dict(obj.get("params") or {}), inputs=dict(obj.get("inputs") or {}),
                   image=obj.get("image"),
                   command=[str(a) for a in command] if command is not None else None)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """A step job's result: its outputs (read by the steps that need it), where its artefacts
    are, and one line for a person."""

    outputs: dict[str, Any]
    artefacts: str  # the step's folder in the artefact store
    summary: str
    kind: Literal["step"] = "step"  # tells it from a JobResult or FleetPlan in a JobFinished

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> StepResult:
        return cls(outputs=dict(obj.get("outputs") or {}), artefacts=str(obj.get("artefacts", "")),
                   summary=str(obj.get("summary", "")))
