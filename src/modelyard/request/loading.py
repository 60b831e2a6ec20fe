"""Read a train request from a YAML/JSON file or a mapping, with errors that name the field."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelyard.errors import RequestError
from modelyard.request.models import TrainRequest


def parse_request(data: Mapping[str, Any] | TrainRequest) -> TrainRequest:
    """Validate a mapping as a train request.

    Raises:
        RequestError: naming every field that is missing, unknown or wrong.
    """
    if isinstance(data, TrainRequest):
        return data
    if not isinstance(data, Mapping):
        raise RequestError(f"a train request must be a mapping, got {type(data).__name__}")
    try:
        return TrainRequest.model_validate(dict(data))
    except ValidationError as exc:
        raise RequestError(describe_validation_error(exc)) from None


def load_request(source: str | Path) -> TrainRequest:
    """Load a request from a ``.yaml``/``.yml``/``.json`` file.

    Raises:
        RequestError: the file is missing, is not YAML/JSON, or is not a valid request.
    """
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RequestError(f"cannot read request file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RequestError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                           f"{exc}") from None
    try:
        return parse_request(data)
    except RequestError as exc:
        raise RequestError(f"{path}: {exc}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One clause per problem: ``train.label: Field required``."""
    return describe_errors(exc.errors())


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's (or FastAPI's) error list as one message naming every field."""
    lines = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"] if p != "body")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling against the request reference)"
        lines.append(f"{loc or 'request'}: {msg}")
    return "invalid train request: " + "; ".join(lines)
