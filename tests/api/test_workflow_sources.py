"""Only code the operator installed or allowed runs: a request's workflow is checked at the door.

The worker checks again before importing (tests/runtime/test_training_errors.py); these tests go
through the real server, whose working directory holds a planted module.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, start_server, with_workflow

EVIL = "open({marker!r}, 'w').close()\n\nclass X:\n    pass\n"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server started in a folder that holds ``evilmod.py``, allowing the ``tests`` package."""
    tmp = tmp_path_factory.mktemp("sources")
    marker = tmp / "ran"
    (tmp / "evilmod.py").write_text(EVIL.format(marker=str(marker)))
    root = Path(__file__).parents[2]
    server = start_server(tmp, "sqlite", "--workflow-package", "tests",
                          env={"PYTHONPATH": str(root)}, cwd=tmp)
    yield server, marker
    server.stop()


@pytest.mark.parametrize("name", ["{tmp}/evilmod.py:X", "evilmod:X", "os:system",
                                  "modelyard.../x:Y"])
def test_a_request_naming_code_the_operator_did_not_allow_is_refused(
        guarded: tuple[ServerProcess, Path], fraud_request: dict[str, Any], name: str) -> None:
    server, marker = guarded
    request = copy.deepcopy(fraud_request)
    request["train"]["workflow_name"] = name.format(tmp=marker.parent)
    answer = httpx.post(f"{server.url}/train", json=request, timeout=30)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["message"].startswith("train.workflow_name: workflow")
    assert "--workflow-package" in body["message"] or "dotted path" in body["message"]
    assert not marker.exists()


def test_a_class_in_an_allowed_package_trains(
        guarded: tuple[ServerProcess, Path], fraud_request: dict[str, Any]) -> None:
    server, _ = guarded
    request = with_workflow(fraud_request, "tests.workflows_for_api:Tiny")
    with server.client() as client:
        job = client.wait(client.train(request), 120)
    provenance = json.loads(Path(job["result"]["provenance_path"]).read_text())
    assert provenance["workflow"]["class"] == "tests.workflows_for_api:Tiny"


def test_the_server_takes_its_working_directory_off_the_import_path(tmp_path: Path) -> None:
    (tmp_path / "evilmod.py").write_text("")
    code = ("from modelyard.cli.main import forget_working_directory\n"
            "forget_working_directory()\n"
            "import importlib.util\n"
            "print(importlib.util.find_spec('evilmod'))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, check=True, timeout=60)
    assert done.stdout.strip() == "None"
