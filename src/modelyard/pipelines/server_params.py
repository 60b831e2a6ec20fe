"""The ``with:`` blocks of the steps the server runs itself: train, validate_model, deploy.

A train step's ``with:`` is a train request, inline, or ``{request_file: PATH}`` naming a
YAML/JSON request under the data roots (read when the step runs, so a run trains what the file
says then). Worker-side steps' blocks are :mod:`modelyard.pipelines.blocks`'.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelyard.errors import DataAccessDenied, RequestError, WorkflowError
from modelyard.pipelines.spec import DeployTarget, PipelineSpec, StepSpec
from modelyard.request.loading import describe_errors, load_request, parse_request
from modelyard.request.models import TrainRequest
from modelyard.settings import Settings


class ValidateModelWith(BaseModel):
    """``validate_model``: each version the train step registered, against production."""

    model_config = ConfigDict(extra="forbid")

    require_all: bool = Field(False, description="fail when any candidate is refused, not "
                              "only when every one is")


class DeployWith(BaseModel):
    """``deploy``: where the versions that passed go."""

    model_config = ConfigDict(extra="forbid")

    to: DeployTarget = Field(description="shadow: scored beside production; approval: left "
                             "waiting for a person; production: through the model's policy")


class TrainFileWith(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_file: str = Field(min_length=1, max_length=4_096)


def parse_with(step: StepSpec, model: type[BaseModel]) -> Any:
    """``step``'s ``with:`` as ``model``; RequestError naming the step and the field."""
    try:
        return model.model_validate(step.with_)
    except ValidationError as exc:
        errors = [{**e, "loc": ("with", *e["loc"])}
                  for e in exc.errors(include_url=False, include_input=False)]
        raise RequestError(f"step {step.name!r}: "
                           + describe_errors(errors, f"{step.type} step")) from None


def train_request(step: StepSpec, data_roots: Sequence[str]) -> TrainRequest:
    """The train request of a train step: inline, or read from its ``request_file``.

    Raises:
        RequestError: naming the step: the request is invalid, or its file cannot be read.
        DataAccessDenied: the file lies outside every data root.
    """
    if set(step.with_) == {"request_file"}:
        path = request_file(parse_with(step, TrainFileWith).request_file, data_roots)
        try:
            return load_request(path)
        except RequestError as exc:
            raise RequestError(f"step {step.name!r}: {exc}") from None
    try:
        return parse_request(step.with_)
    except RequestError as exc:
        raise RequestError(f"step {step.name!r}: with: {exc}") from None


def request_file(path: str, data_roots: Sequence[str]) -> Path:
    """``path`` (absolute, or relative to a data root) if it is a file inside a local data
    root, symlinks resolved; refused with the same message whatever lies outside."""
    if "\x00" in path:
        raise RequestError(f"request file {path!r} holds a NUL character, which no file name "
                           "can hold; check the train step's with.request_file")
    roots = [os.path.realpath(r) for r in data_roots if "://" not in r]
    candidates = [path] if os.path.isabs(path) else [os.path.join(r, path) for r in roots]
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            if os.path.isfile(real):
                return Path(real)
        elif os.path.isabs(path):
            raise DataAccessDenied(f"request file {path} is outside the configured data roots; "
                                   "move it under one of them")
    raise RequestError(f"request file {path} does not exist under the data roots; check the "
                       "train step's with.request_file")


def check_pipeline(spec: PipelineSpec, settings: Settings) -> str | None:
    """Everything a spec names that can be checked before a run: each step's ``with:``, a
    train step's request (and its workflow, as ``POST /train`` checks it), what a command
    step runs and the image a step names. Returns the model its triggers watch: the spec's
    ``model``, else the first train step's model name.

    Raises:
        RequestError: naming the step and the field; or a drift, decay or new_data trigger
            and no model for it to watch.
        DataAccessDenied: a train step's request file lies outside the data roots.
    """
    from modelyard.pipelines import blocks
    from modelyard.runtime.workflow import allowed_module

    model: str | None = spec.model
    for step in spec.steps:
        try:
            if step.type == "train":
                request = train_request(step, settings.data_roots)
                model = model or request.metadata.model_name
                name = request.train.workflow_name
                if ":" in name:
                    allowed_module(name, settings.workflow_modules, settings.workflow_packages)
            elif step.type == "validate_model":
                parse_with(step, ValidateModelWith)
            elif step.type == "deploy":
                parse_with(step, DeployWith)
            else:
                blocks.validate_params(step.type, step.with_)
                blocks.check_image(step.image, settings)
                if step.type == "command":
                    blocks.check_command(step.command, settings)
        except WorkflowError as exc:
            raise RequestError(f"step {step.name!r}: train.workflow_name: {exc}") from None
        except RequestError as exc:
            message = str(exc)
            if not message.startswith(f"step {step.name!r}"):
                message = f"step {step.name!r}: {message}"
            raise RequestError(message) from None
    watching = [t.key for t in spec.triggers if t.type != "schedule"]
    if model is None and watching:  # else its checks fail on every tick, for nobody to see
        raise RequestError(f"model: trigger {watching[0]!r} watches a model, and this pipeline "
                           "names none; give the pipeline model: NAME, or a train step")
    return model
