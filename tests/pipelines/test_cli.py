"""``modelyard pipelines`` against the real server: status exits 1 naming a failing pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from modelyard.cli.main import cli
from tests.conftest import ServerProcess
from tests.pipelines.conftest import train_with


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_status_exits_non_zero_naming_the_failing_pipeline(server: ServerProcess, name: str,
                                                          tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "steps": [
        {"name": "fit", "type": "train", "with": train_with(name, "Raises", max_depth=3)},
        {"name": "check", "type": "validate_model", "needs": ["fit"]}]}))

    def run(*args: str) -> tuple[int, str]:
        out = CliRunner().invoke(cli, ["pipelines", *args, "--url", server.url])
        return out.exit_code, " ".join(out.output.split())

    assert run("create", str(spec)) == (0, f"pipeline {name}: fit -> check")
    code, out = run("run", name, "--wait")
    assert code == 1 and "step 'fit' failed: ValueError" in out and "max_depth=3" in out, out
    run_id = out.split("started run ", 1)[1].split()[0]
    code, out = run("status")
    assert code == 1 and "failing pipelines:" in out and name in out.split(
        "failing pipelines:")[1], out
    code, out = run("status", run_id)
    assert code == 1 and "skipped" in out, out
