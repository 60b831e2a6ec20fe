"""The built-in pipeline steps that run as jobs: their ``with:`` blocks, and what may run.

:func:`validate_params` checks a ``validate_data``, ``evaluate`` or ``command`` step's ``with:``
block when a pipeline is created, so a typo is a 422 naming the field rather than a failed run;
the worker parses the same models again (:mod:`modelyard.runtime.pipeline_steps`).
:func:`check_command` and :func:`check_image` hold what a request may run to what the operator
installed: a command step's program must be an executable inside one of the ``--step-commands``
folders (symlinks resolved, no escaping them), and a step's image must start with one of the
``--step-images`` prefixes; with neither configured, no command step and no image is accepted.

Both the server and the worker import this module: it needs pydantic and nothing of the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelyard.errors import RequestError
from modelyard.request.dates import parse_duration
from modelyard.request.limits import (
    MAX_COLUMN_CHARS,
    MAX_COLUMNS,
    MAX_FILTER_VALUES,
    MAX_PATH_CHARS,
    validate_name,
)
from modelyard.request.loading import describe_errors
from modelyard.request.models import Column, Filter

if TYPE_CHECKING:
    from modelyard.settings import Settings

DataPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
AllowedValues = Annotated[list[str | int | float | bool],
                          Field(min_length=1, max_length=MAX_FILTER_VALUES)]
# Larger inputs than any real step needs are refused rather than carried through the job store.
MAX_EVALUATION_SETS = 20
MAX_CUTOFFS = 20
MAX_COMMAND_PARAMS_BYTES = 64 * 1024


MAX_VERSION = 2**31 - 1


def _model_name(value: str) -> str:
    return validate_name("model name", value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnRule(_Strict):
    """What one column must satisfy. A rate is a fraction (0.01 is 1%)."""

    type: Literal["int", "float", "str", "bool", "datetime"] | None = None
    nullable: bool = True
    max_null_rate: Rate | None = None
    min: float | None = None
    max: float | None = None
    isin: AllowedValues | None = None


class ValidateDataParams(_Strict):
    """``validate_data``: the data at ``path`` must meet every rule given."""

    path: DataPath
    date_column: Column | None = None
    columns: Annotated[dict[Column, ColumnRule], Field(max_length=MAX_COLUMNS)] = Field(
        default_factory=dict)
    min_rows: Annotated[int, Field(ge=0)] | None = None
    label: Column | None = None
    min_positives: Annotated[int, Field(ge=0)] | None = None
    max_age: str | None = None  # freshness of the newest date_column value: "2d", "12h"

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)  # its ValueError names the value and the form
        return value

    @model_validator(mode="after")
    def _needs(self) -> ValidateDataParams:
        if self.min_positives is not None and self.label is None:
            raise ValueError("min_positives needs label: name the label column to count "
                             "its positives")
        if self.max_age is not None and self.date_column is None:
            raise ValueError("max_age needs date_column: name the column whose newest date "
                             "must be recent")
        return self


class EvaluationSet(_Strict):
    """One extra evaluation set: a parquet path under the data roots, optionally filtered."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_COLUMN_CHARS)]
    path: DataPath
    filters: Annotated[list[Filter], Field(max_length=50)] = Field(default_factory=list)


class EvaluateParams(_Strict):
    """``evaluate``: a trained version scored on extra sets, with business metrics.

    The model is the one the step named by ``model_from`` trained (its outputs hold
    ``model_id`` and ``job_id``), or the version ``model_name``/``version``/``tenant`` (the
    server resolves it into the step's ``inputs["model"]``); with neither, the one step it
    needs that trained a model.
    """

    model_from: Column | None = None
    model_name: Annotated[str, AfterValidator(_model_name)] | None = None
    # A version number as the registry stores it (32 bits): a larger one could not even be
    # looked up, and the run that asks would retry that lookup for ever.
    version: Annotated[int, Field(ge=1, le=MAX_VERSION)] | None = None
    tenant: Annotated[str, Field(min_length=1, max_length=MAX_COLUMN_CHARS)] = "*"
    sets: Annotated[list[EvaluationSet], Field(min_length=1, max_length=MAX_EVALUATION_SETS)]
    # Business metrics of a binary model: recall where the false-positive rate is at most each
    # value, and precision among the k highest scores for each k.
    recall_at_fpr: Annotated[list[Annotated[float, Field(gt=0.0, lt=1.0)]],
                             Field(max_length=MAX_CUTOFFS)] = Field(default_factory=list)
    precision_at_k: Annotated[list[Annotated[int, Field(ge=1)]],
                              Field(max_length=MAX_CUTOFFS)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_model(self) -> EvaluateParams:
        if self.model_from is not None and self.model_name is not None:
            raise ValueError("give either model_from (a train step) or model_name and "
                             "version, not both")
        if (self.model_name is None) != (self.version is None):
            raise ValueError("model_name and version go together: give both, or neither")
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"sets: names must be unique, got {names}")
        return self


class CommandParams(BaseModel):
    """``command``: any JSON object, handed to the program in its inputs.json as ``params``."""

    model_config = ConfigDict(extra="allow", frozen=True)


PARAMS: dict[str, type[BaseModel]] = {
    "validate_data": ValidateDataParams,
    "evaluate": EvaluateParams,
    "command": CommandParams,
}


def parse_params(type: str, params: Any) -> BaseModel:
    """The ``with:`` block of a step of ``type`` as its model.

    Raises:
        RequestError: an unknown type, or a field of the block that is missing, unknown or
            wrong, named as ``with.<field>``.
    """
    model = PARAMS.get(type)
    if model is None:
        raise RequestError(f"step type {type!r} is not one of {', '.join(PARAMS)} (a step of "
                           "another type does not run as a step job)")
    if not isinstance(params, dict):
        raise RequestError(f"with: a {type} step's with: block must be a mapping, got "
                           f"{params.__class__.__name__}")
    if type == "command" and len(json.dumps(params, default=str)) > MAX_COMMAND_PARAMS_BYTES:
        raise RequestError(f"with: a command step's with: block is over "
                           f"{MAX_COMMAND_PARAMS_BYTES // 1024} KiB as JSON; pass large inputs "
                           "as files under the data roots")
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        errors = [{**e, "loc": ("with", *e["loc"])}
                  for e in exc.errors(include_url=False, include_input=False)]
        raise RequestError(describe_errors(errors, f"{type} step")) from None


def validate_params(type: str, params: dict[str, Any]) -> None:
    """Check a step's ``with:`` block (see :func:`parse_params`); nothing is returned."""
    parse_params(type, params)


def check_command(command: Sequence[str] | None, settings: Settings) -> str:
    """The real path of the program a command step runs, if the operator allows it."""
    return allowed_program(command, settings.step_commands)


def check_image(image: str | None, settings: Settings) -> None:
    """Refuse an image outside the operator's ``--step-images`` prefixes (None: no image)."""
    allowed_image(image, settings.step_images)


def allowed_program(command: Sequence[str] | None, folders: Sequence[str]) -> str:
    """The real path of ``command[0]``: an executable file inside one of ``folders``.

    A bare name is looked up in the folders in order; a path must lie inside one of them once
    symlinks and ``..`` are resolved. The message never says what exists outside them.

    Raises:
        RequestError: no command, no allowed folders, or a program outside them or not
            executable.
    """
    if not command or not command[0]:
        raise RequestError("command: a command step needs a command, its program first "
                           "(e.g. [\"score.sh\", \"--fast\"])")
    program = command[0]
    for i, arg in enumerate(command):
        if "\x00" in arg:  # no path or argv can hold one; the OS refuses it, not a 500
            raise RequestError(f"command.{i}: {arg!r} holds a NUL character, which no "
                               "program name or argument can hold; remove it")
    if not folders:
        raise RequestError(f"command: {program!r} cannot run: this server runs no command "
                           "steps; its operator allows them with --step-commands DIR "
                           "(MODELYARD_STEP_COMMANDS)")
    real_folders = [os.path.realpath(f) for f in folders]
    if os.sep in program:
        candidates = [program] if os.path.isabs(program) else [
            os.path.join(f, program) for f in real_folders]
    else:
        candidates = [os.path.join(f, program) for f in real_folders]
    for candidate in candidates:
        real = os.path.realpath(candidate)
        inside = any(os.path.commonpath([real, f]) == f for f in real_folders)
        if inside and os.path.isfile(real) and os.access(real, os.X_OK):
            return real
    raise RequestError(
        f"command: {program!r} is not an executable in the folders this server runs command "
        "steps from; ask its operator to install it (or a wrapper for its interpreter) in one "
        "of the --step-commands folders, and name it by its file name")


def allowed_image(image: str | None, prefixes: Sequence[str]) -> None:
    """Refuse ``image`` unless it starts with one of ``prefixes`` (None: nothing to check).

    Raises:
        RequestError: an image, and none of the prefixes matches it.
    """
    if image is None:
        return
    if not prefixes:
        raise RequestError(f"image: {image!r} cannot be used: this server runs no step images; "
                           "its operator allows them with --step-images PREFIX "
                           "(MODELYARD_STEP_IMAGES)")
    if not any(image.startswith(p) for p in prefixes):
        raise RequestError(f"image: {image!r} does not start with an allowed prefix "
                           f"({', '.join(prefixes)}); use an image from one of them")
