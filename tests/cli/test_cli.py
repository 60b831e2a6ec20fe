"""The ``modelyard`` command against the real server, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelyard.client import Client
from tests.conftest import ServerProcess, example_request, with_workflow


def modelyard(*args: str, url: str | None = None, cwd: Path | None = None,
              timeout: float = 120, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run the command as a user's script would: stdout and stderr are pipes, not a terminal."""
    env = {**os.environ, "COLUMNS": str(columns)}
    if url:
        env["MODELYARD_URL"] = url
    return subprocess.run([sys.executable, "-m", "modelyard", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def request_file(tmp_path: Path, fraud_request: dict[str, object]) -> Path:
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(fraud_request))
    return path


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_train_wait_shows_progress_and_result(server: ServerProcess, request_file: Path) -> None:
    run = modelyard("train", str(request_file), "--wait", url=server.url)
    assert run.returncode == 0, run.stderr
    assert "submitted job" in run.stdout
    for text in ("succeeded", "train", "evaluate", "roc_auc", "model id", "sha256:"):
        assert text in run.stdout
    # The live display as a script that reads the output sees it: the heading after the
    # progress view starts its own line, and the view ends with its last step on the line
    # before (compare, when the model has a production version: other tests share its name).
    lines = run.stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if "holdout metrics" in line)
    assert lines[heading].strip() == "holdout metrics (binary)"
    assert re.match(r"\s*done\s+(evaluate|compare)\s", lines[heading - 1]), lines[heading - 1]
    job_id = run.stdout.split("submitted job")[1].split()[0]

    listed = modelyard("jobs", "list", "--json", "--project",
                       yaml.safe_load(request_file.read_text())["metadata"]["project"],
                       url=server.url)
    assert [j["job_id"] for j in json.loads(listed.stdout)["jobs"]] == [job_id]
    shown = modelyard("jobs", "show", job_id, url=server.url)
    assert shown.returncode == 0 and "step train" in shown.stdout and "roc_auc" in shown.stdout
    logs = modelyard("jobs", "logs", job_id, url=server.url)
    assert "step evaluate: done" in logs.stdout


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_cancel_from_the_command_line(server: ServerProcess,
                                      fraud_request: dict[str, object]) -> None:
    with Client(server.url) as client:
        job_id = client.train(with_workflow(fraud_request, "Sleeps", seconds=60))
        run = modelyard("jobs", "cancel", job_id, url=server.url)
        assert run.returncode == 0 and "cancelled" in run.stdout
        assert client.status(job_id)["transition"]["job_state"] == "cancelled"


def test_invalid_request_file_is_refused_offline(tmp_path: Path) -> None:
    request = example_request()
    request["holdout_sampling"]["date_range_sampling"]["end_date"] = "2017-01-01"  # type: ignore[index]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(request))
    run = modelyard("validate", str(path))
    assert run.returncode == 2
    assert "holdout_sampling.date_range_sampling" in run.stdout
    assert "must be before end_date" in run.stdout
    good = tmp_path / "good.json"
    good.write_text(json.dumps(example_request()))
    ok = modelyard("validate", str(good))
    assert ok.returncode == 0 and "valid" in ok.stdout


def test_unreachable_server_says_how_to_start_one(request_file: Path) -> None:
    run = modelyard("train", str(request_file), url="http://127.0.0.1:9")
    assert run.returncode == 2
    assert "cannot reach the Modelyard server" in run.stdout and "modelyard server" in run.stdout


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    run = modelyard("demo", "--home", str(tmp_path / "demo"), "--rows", "30000", timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    for text in ("generated 30,000 synthetic charges", "submitted job", "succeeded", "roc_auc",
                 "holdout scores"):
        assert text in run.stdout
    assert (tmp_path / "demo" / "fraud-request.yaml").is_file()


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_fleet_wait_shows_a_progress_bar(server: ServerProcess, tmp_path: Path,
                                         fraud_request: dict[str, object]) -> None:
    request = json.loads(json.dumps(fraud_request))
    request["data"]["features"]["names"].append("merchant_id")
    request["train"]["custom_params"] = {"max_iter": 10}
    request["tenants"] = {"column": "merchant_id", "min_training_rows": 400}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(request))
    run = modelyard("train", str(path), "--wait", url=server.url, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fleet" in run.stdout and "ETA" in run.stdout
    assert "served by:" in run.stdout and "global" in run.stdout
    assert "too few training rows" in run.stdout
    job_id = run.stdout.split("submitted job")[1].split()[0]
    shown = modelyard("jobs", "show", job_id, url=server.url)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "step partition" in shown.stdout and "served by:" in shown.stdout
