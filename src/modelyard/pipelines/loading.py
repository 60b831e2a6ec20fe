"""Read a pipeline from a YAML/JSON file, as train requests are read: no YAML anchors or
aliases (:class:`~modelyard.request.loading.RequestYamlLoader`), errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelyard.errors import RequestError
from modelyard.pipelines.spec import PipelineSpec
from modelyard.request.loading import describe_validation_error, read_document


def parse_pipeline(data: Mapping[str, Any] | PipelineSpec) -> PipelineSpec:
    """Validate a mapping as a pipeline.

    Raises:
        RequestError: naming the step or field that is wrong.
    """
    if isinstance(data, PipelineSpec):
        return data
    if not isinstance(data, Mapping):
        raise RequestError(f"a pipeline must be a mapping, got {type(data).__name__}")
    try:
        return PipelineSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise RequestError(describe_validation_error(exc).replace(
            "invalid train request", "invalid pipeline")) from None


def load_pipeline(source: str | Path) -> PipelineSpec:
    """Load a pipeline from a ``.yaml``/``.yml``/``.json`` file.

    Raises:
        RequestError: the file is missing, is not YAML/JSON, uses anchors or aliases, or is
            not a valid pipeline.
    """
    path = Path(source)
    data = read_document(path, "pipeline")
    try:
        return parse_pipeline(data)
    except RequestError as exc:
        raise RequestError(f"{path}: {exc}") from None
