"""A pipeline: a named DAG of steps, plus the triggers the scheduler watches it with.

```yaml
name: fraud-weekly
model: fraud               # what its triggers watch; default: the train step's model_name
steps:
  - name: train
    type: train
    with: {...}            # a train request, inline, or {request_file: PATH} under the data roots
  - name: check
    type: validate_model
    needs: [train]
  - name: ship
    type: deploy
    needs: [check]
    with: {to: shadow}     # shadow | approval | production
triggers:
  - {type: schedule, cron: "0 3 * * 1"}
```

A spec is plain data, validated here without I/O: step names, types and the DAG (unknown
``needs``, cycles, duplicate names), each refused with a message naming the step. The ``with:``
blocks of worker-side steps are checked by :mod:`modelyard.pipelines.blocks`, those of the
server-side steps by :mod:`modelyard.pipelines.server_params`.
"""

from __future__ import annotations

import graphlib
import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from modelyard.request.limits import (
    MAX_CUSTOM_PARAMS_DEPTH,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    nesting_depth,
    validate_name,
)
from modelyard.triggers.spec import Trigger

SERVER_STEPS = ("train", "validate_model", "deploy")
"""Steps the pipeline runner does itself (a train job it submits, registry decisions)."""
WORKER_STEPS = ("validate_data", "evaluate", "command")
"""Steps that run as a job of kind ``step`` on the server's executor."""
STEP_TYPES = (*SERVER_STEPS, *WORKER_STEPS)

MAX_STEPS = 100
MAX_TRIGGERS = 20
MAX_WITH_BYTES = 256 * 1024
"""A step's ``with:`` block as compact JSON (a train request inline fits many times over)."""
MAX_ARGV = 200
MAX_ARG_CHARS = 4_096

StepName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


def _pipeline_name(value: str) -> str:
    if value == "runs":  # GET /pipelines/runs lists runs
        raise ValueError("'runs' cannot name a pipeline (GET /pipelines/runs lists runs); "
                         "choose another name")
    return validate_name("pipeline name", value)


def _model_name(value: str) -> str:
    return validate_name("model name", value)


class StepSpec(BaseModel):
    """One step: what it is, what it needs, and its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: StepName
    type: str = Field(max_length=64, description=f"one of: {', '.join(STEP_TYPES)}")
    needs: list[StepName] = Field(default_factory=list, max_length=MAX_STEPS)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    image: str | None = Field(None, min_length=1, max_length=1_000,
                              description="container image it runs in (Kubernetes)")
    command: list[Annotated[str, Field(max_length=MAX_ARG_CHARS)]] | None = Field(
        None, min_length=1, max_length=MAX_ARGV, description="a command step's argv")
    retries: int = Field(0, ge=0, le=5, description="runs again this many times on failure")

    @model_validator(mode="after")
    def _check(self) -> StepSpec:
        where = f"step {self.name!r}"
        if self.type not in STEP_TYPES:
            raise ValueError(f"{where}: unknown type {self.type!r}; the step types are "
                             f"{', '.join(STEP_TYPES)}")
        if self.command is not None and self.type != "command":
            raise ValueError(f"{where}: command is only for steps of type command (this one "
                             f"is {self.type}); remove it")
        if self.type == "command" and self.command is None:
            raise ValueError(f"{where}: a command step needs command, the program and its "
                             "arguments, e.g. command: [Rscript, score.R]")
        if self.image is not None and self.type in SERVER_STEPS:
            raise ValueError(f"{where}: a {self.type} step runs in the server and takes no "
                             "image; remove it")
        depth = nesting_depth(self.with_)
        if depth > MAX_CUSTOM_PARAMS_DEPTH:
            raise ValueError(f"{where}: with is nested {depth:,} deep; at most "
                             f"{MAX_CUSTOM_PARAMS_DEPTH} levels are allowed")
        try:  # NaN and Infinity are no JSON: PostgreSQL and the step's program refuse them
            text = json.dumps(self.with_, separators=(",", ":"), default=str, allow_nan=False)
        except ValueError:
            raise ValueError(f"{where}: with holds a number that is not finite (NaN or "
                             "Infinity), which JSON cannot carry; use a finite number") from None
        size = len(text.encode())
        if size > MAX_WITH_BYTES:
            raise ValueError(f"{where}: with is {size:,} bytes as JSON; at most "
                             f"{MAX_WITH_BYTES:,} are allowed (put large inputs in a file "
                             "under the data roots)")
        return self


class PipelineSpec(BaseModel):
    """A pipeline as ``POST /pipelines`` takes it (and ``modelyard pipelines create`` reads)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, AfterValidator(_pipeline_name)]
    description: str = Field("", max_length=MAX_TEXT_CHARS)
    model: Annotated[str, AfterValidator(_model_name)] | None = Field(
        None, description="the model its triggers watch; default: the train step's model_name")
    steps: list[StepSpec] = Field(min_length=1, max_length=MAX_STEPS)
    triggers: list[Trigger] = Field(default_factory=list, max_length=MAX_TRIGGERS)

    @model_validator(mode="after")
    def _dag(self) -> PipelineSpec:
        order(self.steps)
        keys = [t.key for t in self.triggers]
        for key in keys:
            if keys.count(key) > 1:  # the scheduler keeps one state per name: they would share it
                raise ValueError(f"triggers: {keys.count(key)} triggers are named {key!r} (a "
                                 "trigger's name defaults to its type); give each its own name:")
        return self

    def step(self, name: str) -> StepSpec:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def order(steps: list[StepSpec]) -> list[str]:
    """The steps' names in an order that runs every step after the steps it needs.

    Raises:
        ValueError: two steps share a name, a step needs one that does not exist (or itself),
            or the steps' needs form a cycle; the message names the step.
    """
    names: set[str] = set()
    for step in steps:
        if step.name in names:
            raise ValueError(f"step {step.name!r} is defined twice; give each step its own "
                             "name")
        names.add(step.name)
    for step in steps:
        for need in step.needs:
            if need == step.name:
                raise ValueError(f"step {step.name!r} needs itself; remove it from its needs")
            if need not in names:
                raise ValueError(f"step {step.name!r} needs {need!r}, which is no step of this "
                                 f"pipeline (steps: {', '.join(sorted(names))})")
    sorter = graphlib.TopologicalSorter({s.name: s.needs for s in steps})
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise ValueError(f"step {cycle[0]!r} is in a cycle of needs: {' -> '.join(cycle)}; a "
                         "pipeline's steps must form a DAG") from None


def downstream(spec: PipelineSpec, start: str) -> set[str]:
    """``start`` and every step that needs it, directly or not."""
    found = {start}
    changed = True
    while changed:
        changed = False
        for step in spec.steps:
            if step.name not in found and found.intersection(step.needs):
                found.add(step.name)
                changed = True
    return found


class RunOverride(BaseModel):
    """What a run changes of one step: a developer's branch beside everyone else's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = Field(None, min_length=1, max_length=1_000)
    command: list[Annotated[str, Field(max_length=MAX_ARG_CHARS)]] | None = Field(
        None, min_length=1, max_length=MAX_ARGV)


Overrides = dict[Annotated[str, Field(max_length=64)], RunOverride]
TenantName = Annotated[str, Field(max_length=MAX_NAME_CHARS), AfterValidator(
    lambda v: validate_name("tenant name", v))]
DeployTarget = Literal["shadow", "approval", "production"]
