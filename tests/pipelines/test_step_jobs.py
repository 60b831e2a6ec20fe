"""Pipeline steps as jobs of the job system: validate_data, evaluate and command, through a real
server and its real worker processes.

Step jobs are queued straight into the running server's job store with
:func:`~modelyard.jobs.step_jobs.create_step_job` (what the pipeline runner calls); the server's
dispatcher claims and runs them like any job. The package's ``command_server``, on SQLite (the
store's part is the same as a train job's), whose ``--step-commands`` folder gets this module's
shell programs.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.artifacts import ArtifactStore
from modelyard.client import Client
from modelyard.errors import Conflict
from modelyard.jobs.step_jobs import create_step_job, step_result
from modelyard.jobs.store import read_job
from modelyard.protocol.steps import StepJob, StepResult
from modelyard.runtime.trained import load_trained
from modelyard.sql import make_engine, session_factory
from modelyard.synthetic import example_request
from tests.conftest import (
    WORKFLOWS,
    ServerProcess,
    process_alive,
    wait_until,
    with_workflow,
)
from tests.pipelines.conftest import install_programs
from tests.test_readme import readme_block

README_SECTION = "Pipeline steps that run as jobs"
README_PROGRAM = readme_block(README_SECTION, "sh", containing="MODELYARD_OUTPUTS")
HELLO = """#!/bin/sh
# Reads a parameter and an upstream output from inputs.json, with nothing but sed.
greeting=$(sed -n 's/.*"greeting": "\\([^"]*\\)".*/\\1/p' "$MODELYARD_INPUTS")
rows=$(sed -n 's/.*"rows": \\([0-9]*\\).*/\\1/p' "$MODELYARD_INPUTS")
echo "shell says $greeting"
echo "a note on stderr" >&2
printf '{"message": "%s world", "upstream_rows": %s}' "$greeting" "$rows" > "$MODELYARD_OUTPUTS"
mkdir -p "$MODELYARD_ARTIFACTS/plots"
echo "made by sh" > "$MODELYARD_ARTIFACTS/plots/report.txt"
"""
FAILS = """#!/bin/sh
echo "starting" >&2
echo "boom: column amount is all zero" >&2
exit 3
"""
SLEEPS = """#!/bin/sh
echo "pid $$"
exec sleep 120
"""
NOT_AN_OBJECT = """#!/bin/sh
echo '[1, 2]' > "$MODELYARD_OUTPUTS"
"""



@pytest.fixture(scope="module")
def step_server(command_server: ServerProcess) -> ServerProcess:
    """The package's server for command steps, with this module's programs and data."""
    install_programs(command_server, {
        "hello.sh": HELLO, "fails.sh": FAILS, "list.sh": NOT_AN_OBJECT, "sleeps.sh": SLEEPS,
        "report.sh": README_PROGRAM})
    _write_checked_data(command_server.home / "data")
    return command_server


@pytest.fixture(scope="module")
def store_sessions(step_server: ServerProcess) -> Iterator[Any]:
    engine = make_engine(step_server.db_url)
    _LOGS[:] = [step_server.home / "logs"]
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def client(step_server: ServerProcess) -> Iterator[Client]:
    with step_server.client() as c:
        yield c


def _write_checked_data(folder: Path) -> None:
    """fresh.parquet passes every rule below; stale.parquet breaks several."""
    rng = np.random.default_rng(0)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = 1000
    fresh = pd.DataFrame({
        "amount": rng.uniform(1, 500, rows),
        "country": rng.choice(["US", "CA"], rows),
        "created_at": [now - dt.timedelta(minutes=i) for i in range(rows)],
        "fraud": np.arange(rows) % 50 == 0,
    })
    fresh.to_parquet(folder / "fresh.parquet")
    stale = fresh.copy()
    stale.loc[:31, "amount"] = np.nan  # 32 of 1000: 3.2% nulls
    stale.loc[40, "amount"] = -5.0
    stale["created_at"] = stale["created_at"] - dt.timedelta(days=10)
    stale["fraud"] = np.arange(rows) < 3
    stale.to_parquet(folder / "stale.parquet")


def _run_step(sessions: Any, client: Client, type: str, params: dict[str, Any], *,
              inputs: dict[str, Any] | None = None, command: list[str] | None = None
              ) -> dict[str, Any]:
    """Queue a step job in the server's store, wait for it, and answer its result answer."""
    job_id = _queue_step(sessions, type, params, inputs=inputs, command=command)
    answer = client.wait(job_id, timeout=60, raise_on_failure=False)
    return {**answer, "job_id": job_id}


def _queue_step(sessions: Any, type: str, params: dict[str, Any], *,
                inputs: dict[str, Any] | None = None, command: list[str] | None = None,
                timeout_seconds: float | None = None) -> str:
    with sessions() as session:
        job = create_step_job(session, StepJob(
            run_id=uuid.uuid4().hex, step=f"s-{type}", type=type,  # type: ignore[arg-type]
            params=params, inputs=inputs or {}, command=command),
            pipeline="steps-test", executor="local", logs_dir=_LOGS[0], submitted_by=None,
            timeout_seconds=timeout_seconds)
        return job.id


def _result(sessions: Any, job_id: str) -> StepResult:
    with sessions() as session:
        result = step_result(read_job(session, job_id))
    assert result is not None, f"job {job_id} has no step result"
    return result


def _state(answer: dict[str, Any]) -> str:
    return str(answer["status"]["transition"]["job_state"])


_LOGS: list[Path] = []  # the module server's logs folder, where its jobs' logs go

RULES: dict[str, Any] = {
    "date_column": "created_at", "min_rows": 500, "label": "fraud", "min_positives": 10,
    "max_age": "2d",
    "columns": {"amount": {"type": "float", "min": 0, "max": 1000, "max_null_rate": 0.01},
                "country": {"type": "str", "isin": ["US", "CA"], "nullable": False}},
}


def test_validate_data_passes_and_reports_what_it_found(store_sessions: Any,
                                                        client: Client) -> None:
    answer = _run_step(store_sessions, client, "validate_data", {"path": "fresh.parquet",
                                                                 **RULES})
    assert _state(answer) == "succeeded", answer
    result = _result(store_sessions, answer["job_id"])
    assert result.outputs["rows"] == 1000 and result.outputs["positives"] == 20
    assert result.outputs["null_rates"]["amount"] == 0.0
    assert result.outputs["fingerprint"].startswith("sha256:")
    assert "1,000 rows, 20 positives pass every rule" in result.summary
    assert json.loads((Path(result.artefacts) / "outputs.json").read_text()) == result.outputs
    steps = [s["name"] for s in client.status(answer["job_id"])["steps"]]
    assert steps == ["check", "validate_data", "artefacts"]
    assert answer["result"] is None  # no model: nothing registered
    with pytest.raises(Conflict, match="is a pipeline step; replay reruns train jobs"):
        client.replay(answer["job_id"])


def test_validate_data_failure_names_each_column_rule_and_figure(store_sessions: Any,
                                                                 client: Client) -> None:
    rules = {**RULES, "columns": {**RULES["columns"], "fraud": {"type": "float"}}}
    answer = _run_step(store_sessions, client, "validate_data", {"path": "stale.parquet",
                                                                 **rules})
    assert _state(answer) == "failed"
    info = answer["exception_info"]
    assert info["kind"] == "data_error" and info["step"] == "validate_data"
    message = info["message"]
    assert "column 'amount': 3.2% nulls, over max_null_rate 1%" in message
    assert "column 'amount': 1 value under min 0 (e.g. -5.0)" in message
    assert "column 'fraud': float expected, but its type is bool" in message
    assert "column 'fraud': 3 positives, under min_positives 10" in message
    assert "column 'created_at': newest value" in message and "over max_age 2d" in message
    assert "country" not in message  # its rules hold


def test_validate_data_missing_column_and_path_outside_the_roots(store_sessions: Any,
                                                                 client: Client) -> None:
    missing = _run_step(store_sessions, client, "validate_data", {
        "path": "fresh.parquet", "columns": {"amount_usd": {"min": 0}}})
    assert "no column 'amount_usd'" in missing["exception_info"]["message"]
    outside = _run_step(store_sessions, client, "validate_data", {"path": "/etc/passwd"})
    assert _state(outside) == "failed"
    assert "outside the configured data roots" in outside["exception_info"]["message"]


def test_evaluate_scores_a_trained_version_with_business_metrics(
        step_server: ServerProcess, store_sessions: Any, client: Client) -> None:
    request = with_workflow(example_request("tiny.parquet"), "Tiny")
    train_id = client.train(request)
    trained = client.wait(train_id, timeout=120)["result"]
    us_only = [{"feature_name": "charge_country", "predicate": "IsIn",
                "feature_value": {"string_vals": ["US"]}}]
    answer = _run_step(store_sessions, client, "evaluate", {
        "sets": [{"name": "all", "path": "tiny.parquet"},
                 {"name": "us", "path": "tiny.parquet", "filters": us_only}],
        "recall_at_fpr": [0.05, 0.2], "precision_at_k": [50]},
        inputs={"train": {"job_id": train_id, "model_id": trained["model_id"]}})
    assert _state(answer) == "succeeded", answer
    metrics = _result(store_sessions, answer["job_id"]).outputs["metrics"]
    assert set(metrics) == {"all", "us"} and "roc_auc" in metrics["us"]

    # The same model named as a registered version: the server says where it is.
    (version,) = [v for v in client.versions(request["metadata"]["model_name"])  # type: ignore[index]
                  if v["job_id"] == train_id]
    by_version = _run_step(store_sessions, client, "evaluate", {
        "model_name": version["model_name"], "version": version["version"],
        "sets": [{"name": "all", "path": "tiny.parquet"}], "recall_at_fpr": [0.05, 0.2],
        "precision_at_k": [50]})
    assert _result(store_sessions, by_version["job_id"]).outputs["metrics"]["all"] \
        == metrics["all"]

    # The same numbers computed here, by brute force over every threshold.
    loaded = load_trained(ArtifactStore(str(step_server.home / "artifacts")),
                          trained["model_id"], train_id, (str(WORKFLOWS),))
    frame = pd.read_parquet(step_server.home / "data" / "tiny.parquet")
    for name, rows in [("all", frame), ("us", frame[frame["charge_country"] == "US"])]:
        y = rows["has_fraud_dispute"].to_numpy(dtype=int)
        p = np.asarray(loaded.workflow.predict(loaded.model, rows.reset_index(drop=True)))
        for fpr in (0.05, 0.2):
            expected = max(float(np.mean(p[y == 1] >= t)) for t in np.unique(p)
                           if np.mean(p[y == 0] >= t) <= fpr)
            assert metrics[name][f"recall_at_fpr_{fpr:g}"] == pytest.approx(expected)
        top = np.argsort(-p, kind="stable")[:50]
        assert metrics[name]["precision_at_50"] == pytest.approx(y[top].mean())


def test_a_shell_command_step_reads_inputs_and_writes_outputs_and_artefacts(
        store_sessions: Any, client: Client) -> None:
    answer = _run_step(store_sessions, client, "command", {"greeting": "hello"},
                       inputs={"check": {"rows": 1234}}, command=["hello.sh"])
    assert _state(answer) == "succeeded", answer
    result = _result(store_sessions, answer["job_id"])
    assert result.outputs == {"message": "hello world", "upstream_rows": 1234}
    assert (Path(result.artefacts) / "artifacts" / "plots" / "report.txt").read_text() \
        == "made by sh\n"
    log, _ = client.logs(answer["job_id"])
    assert "shell says hello" in log and "a note on stderr" in log


def test_the_readmes_command_step_runs_as_written(store_sessions: Any, client: Client) -> None:
    answer = _run_step(store_sessions, client, "command", {"title": "weekly fraud"},
                       command=["report.sh", "--weekly"])
    result = _result(store_sessions, answer["job_id"])
    assert result.outputs == {"title": "weekly fraud", "pages": 1}
    assert (Path(result.artefacts) / "artifacts" / "report.html").read_text() \
        == "<h1>weekly fraud</h1>\n"
    assert "writing the weekly fraud report" in client.logs(answer["job_id"])[0]


def test_a_failing_command_reports_its_exit_code_and_stderr(store_sessions: Any,
                                                            client: Client) -> None:
    answer = _run_step(store_sessions, client, "command", {}, command=["fails.sh"])
    info = answer["exception_info"]
    assert _state(answer) == "failed" and info["step"] == "command"
    assert info["exitcode"] == 3
    assert "'fails.sh' exited with code 3" in info["message"]
    assert "boom: column amount is all zero" in info["message"]


def test_outputs_that_are_not_a_json_object_fail_the_step(store_sessions: Any,
                                                          client: Client) -> None:
    answer = _run_step(store_sessions, client, "command", {}, command=["list.sh"])
    assert "wrote a JSON list to outputs.json; it must be a JSON object" in \
        answer["exception_info"]["message"]


def test_the_worker_refuses_a_program_outside_the_allowed_folders(store_sessions: Any,
                                                                  client: Client) -> None:
    """The server checks at create time; a job that reached the store anyway is refused too."""
    answer = _run_step(store_sessions, client, "command", {}, command=["/bin/sh", "-c", "id"])
    info = answer["exception_info"]
    assert _state(answer) == "failed" and info["step"] == "check"
    assert info["kind"] == "request_error"
    assert "'/bin/sh' is not an executable in the folders" in info["message"]


def test_cancelling_a_command_step_stops_its_program(store_sessions: Any,
                                                    client: Client) -> None:
    job_id = _queue_step(store_sessions, "command", {}, command=["sleeps.sh"])
    wait_until(lambda: "pid " in client.logs(job_id)[0])
    pid = int(client.logs(job_id)[0].split("pid ")[1].split()[0])
    assert process_alive(pid)
    client.cancel(job_id)
    assert _state(client.wait(job_id, timeout=30, raise_on_failure=False)) == "cancelled"
    wait_until(lambda: not process_alive(pid), timeout=10)


def test_a_step_past_its_timeout_is_killed(store_sessions: Any, client: Client) -> None:
    job_id = _queue_step(store_sessions, "command", {}, command=["sleeps.sh"],
                         timeout_seconds=1)
    answer = client.wait(job_id, timeout=30, raise_on_failure=False)
    assert _state(answer) == "failed" and answer["exception_info"]["kind"] == "timeout"
    log = client.logs(job_id)[0]
    if "pid " in log:  # it started before the deadline: its program went with it
        wait_until(lambda: not process_alive(int(log.split("pid ")[1].split()[0])), timeout=10)
