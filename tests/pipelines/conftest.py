"""Pipelines built of small train steps on the 2,000-row file, through the real server; and one
server for the modules whose steps run shell programs."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.synthetic import example_request
from tests.conftest import ServerProcess, start_server, with_workflow


def train_with(model: str, workflow: str = "Tiny", **params: object) -> dict[str, Any]:
    """A train step's ``with:``: the tiny request, its own model name."""
    request = with_workflow(example_request("tiny.parquet"), workflow, **params)
    request["metadata"] = {**request["metadata"], "model_name": model}  # type: ignore[dict-item]
    return request


@pytest.fixture
def name() -> str:
    """A pipeline (and model) name of the test's own: the session server is shared."""
    return f"pl-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="package")
def command_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose command steps may run the programs of one folder and nothing else (each
    module puts its own there with :func:`install_programs`), and images under
    ``registry.example/``. SQLite: the store's part of a run is covered on both backends by
    tests/pipelines/test_runs.py."""
    tmp = tmp_path_factory.mktemp("pipelines-commands")
    (tmp / "commands").mkdir()
    proc = start_server(tmp, "sqlite", "--concurrency", "2", "--step-commands",
                        str(tmp / "commands"), "--step-images", "registry.example/")
    yield proc
    proc.stop()


def install_programs(server: ServerProcess, programs: dict[str, str]) -> None:
    """Write ``programs`` (file name: text) into ``server``'s command folder, executable."""
    for name, text in programs.items():
        path = server.home.parent / "commands" / name
        path.write_text(text)
        path.chmod(stat.S_IRWXU)
