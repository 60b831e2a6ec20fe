"""The live display of ``train --wait``, as a script that reads its output sees it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.test_cli import modelyard
from tests.conftest import ServerProcess, with_workflow


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_heading_after_the_progress_starts_its_own_line(
    server: ServerProcess, tmp_path: Path, fraud_request: dict[str, Any]
) -> None:
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(with_workflow(fraud_request, "Tiny")))
    run = modelyard("train", str(path), "--wait", url=server.url)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if "holdout metrics" in line)
    assert lines[heading].strip() == "holdout metrics (binary)"
    # The progress view ends with its last step, on the line before (compare, when the model
    # has a production version: other tests share its name).
    assert re.match(r"\s*done\s+(evaluate|compare)\s", lines[heading - 1]), lines[heading - 1]
