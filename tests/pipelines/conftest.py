"""Pipelines built of small train steps on the 2,000-row file, through the real server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from modelyard.synthetic import example_request
from tests.conftest import with_workflow


def train_with(model: str, workflow: str = "Tiny", **params: object) -> dict[str, Any]:
    """A train step's ``with:``: the tiny request, its own model name."""
    request = with_workflow(example_request("tiny.parquet"), workflow, **params)
    request["metadata"] = {**request["metadata"], "model_name": model}  # type: ignore[dict-item]
    return request


@pytest.fixture
def name() -> str:
    """A pipeline (and model) name of the test's own: the session server is shared."""
    return f"pl-{uuid.uuid4().hex[:8]}"
