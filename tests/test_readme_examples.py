"""README.md's examples past the quick start, run as written against one real server.

The blocks are taken from README.md itself: the registry's ``modelyard models`` commands, the
predict, labels and explanation ``curl`` lines, the monitoring commands, the online
experiment's Python, the pipeline commands, the fleet's ``tenants`` block and the metrics
scrape. One server (``--workflows my_workflows.py``, the README's workflow) serves them all, on
the quick start's synthetic payments (20,000 rows) and its model, "fraud prediction model":
version 1 is trained first, weak (two boosting rounds of stumps), and approved, then version
2, so the registry block's commands have what they name (a version 2 to compare, stage and
approve, a version 1 to roll back to). The tests run in this file's order, which is the order
the registry's state moves in.

``modelyard`` lines run in this process through the CLI's own entry (``modelyard.cli.main.cli``),
split as bash splits them, which saves an interpreter start per line; ``curl`` lines run the
real ``curl`` with the same split. What stands in for the README's placeholders is in
:meth:`Readme.as_run` (the port, ``4f2c...``, a row's ``...``), and the pipeline's ``RUN_ID``s
are in :func:`test_pipeline_commands`. The files the blocks name are written by the test that
runs the block: ``fraud-weekly.yaml`` (the README's pipeline), ``requests/fraud.yaml`` (its train
step's request), ``report.R`` (its command step's program), ``experiment.yaml`` (the README's
experiment), ``labels.parquet``, and ``fleet.yaml`` (the request with the ``tenants`` block).
The requests are the README's with fewer boosting rounds (:func:`readme_request`).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from modelyard.cli.main import cli
from tests.conftest import IN_CI, Scrape, ServerProcess, start_server
from tests.test_readme import (
    README_URL,
    Ran,
    readme_block,
    request_yaml,
    run_modelyard,
    run_printing,
    shell_commands,
    write_readme_files,
)

MODEL = "fraud prediction model"
REGISTRY = "Registry, approval and serving"
# report.R stands in for the operator's R program (no R here): what the pipeline's command
# step runs. With --long, the README's developer's variant, it runs until it is cancelled.
REPORT_R = """#!/bin/sh
case "$1" in --long) sleep 120 ;; esac
printf '{"pages": 1}' > "$MODELYARD_OUTPUTS"
"""


@dataclass
class Readme:
    """The server the examples run against, the folder they run in, what they made."""

    server: ServerProcess
    folder: Path
    request_ids: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.server.home / "data"

    def as_run(self, command: str) -> str:
        """The README's command with this test's values for its placeholders: the server's
        port for 8765, the request id of an earlier prediction for ``4f2c...``, and no ``...``
        in a predict row (the README's workflow reads ``charge_type`` and ``charge_amount``,
        both given)."""
        command = command.replace("localhost:8765", f"localhost:{self.server.port}")
        command = command.replace(", ...}", "}")
        if self.request_ids:
            command = command.replace("4f2c...", self.request_ids[-1])
        return command

    def run(self, command: str, env: Mapping[str, str] | None = None) -> Ran:
        command = self.as_run(command)
        if not command.startswith("curl "):
            return run_modelyard(command, {"MODELYARD_URL": self.server.url, **(env or {})})
        if shutil.which("curl") is None:
            message = "the README's curl examples run curl: `sudo apt-get install curl`"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        done = subprocess.run(shlex.split(command, comments=True), capture_output=True,
                              text=True, timeout=60, cwd=self.folder)
        return Ran(command, done.returncode, done.stdout, done.stderr)

    def ok(self, command: str, *expected: str, env: Mapping[str, str] | None = None) -> str:
        """Run ``command``; assert it succeeded and printed each of ``expected``."""
        ran = self.run(command, env)
        assert ran.code == 0, f"`{command}` exited {ran.code}:\n{ran.stdout}\n{ran.stderr}"
        for text in expected:
            assert text in ran.stdout, f"`{command}` did not print {text!r}:\n{ran.stdout}"
        return ran.stdout


def answer_keys(value: Any) -> set[str]:
    """Every key of a JSON answer, at any depth."""
    if isinstance(value, dict):
        return set(value).union(*(answer_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(answer_keys(v) for v in value))
    return set()


def shown_keys(block: str) -> set[str]:
    """The keys the README's ``# -> {...}`` answer comments show."""
    answer = "".join(line for line in block.splitlines() if line.lstrip().startswith("#"))
    return set(re.findall(r'"(\w+)":', answer))


def readme_request(model_name: str = MODEL, rounds: int = 10, depth: int = 6,
                   **blocks: Any) -> dict[str, Any]:
    """The README's train request (tests/test_readme.py trains it as written), with ``rounds``
    boosting rounds of trees ``depth`` deep on one thread instead of 100 rounds on two: the
    fits here are a dozen, and 2 OpenMP threads a job on a busy 2-core machine make each
    several times slower. ``blocks`` are added (a ``tenants`` block)."""
    request: dict[str, Any] = yaml.safe_load(request_yaml())
    request["metadata"] = {**request["metadata"], "model_name": model_name}
    request["train"] = {**request["train"],
                        "custom_params": {"max_depth": depth, "max_iter": rounds}}
    return {**request, "resources": {"num_cpus": 1}, **blocks}


@pytest.fixture(scope="module")
def readme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Readme]:
    tmp = tmp_path_factory.mktemp("readme-examples")
    write_readme_files(tmp / "project")
    programs = tmp / "programs"
    programs.mkdir()
    (programs / "report.R").write_text(REPORT_R)
    (programs / "report.R").chmod(0o755)
    server = start_server(tmp, "sqlite", "--workflows", str(tmp / "project" / "my_workflows.py"),
                          "--step-commands", str(programs), "--step-images", "registry.local/")
    try:
        with server.client() as client:
            client.wait(client.train(readme_request(rounds=2, depth=1)), timeout=120)
            client.approve(MODEL, 1, user="ana", comment="the first")
            client.wait(client.train(readme_request()), timeout=120)
        yield Readme(server, tmp / "project")
    finally:
        server.stop()


@pytest.fixture
def in_folder(readme: Readme, monkeypatch: pytest.MonkeyPatch) -> Readme:
    monkeypatch.chdir(readme.folder)  # the README's relative paths: ./export, experiment.yaml
    return readme


def test_registry_commands(in_folder: Readme) -> None:
    readme = in_folder
    lines = shell_commands(readme_block(REGISTRY, "bash", containing="modelyard models list"))
    expected = {
        "list": [MODEL],
        "versions": ["candidate", "production", "sha256:"],
        "compare": ["v1 (production)", "v2 (candidate)", "roc_auc", "feature importance"],
        "stage": [f"{MODEL} v2 (*): shadow"],
        "approve": [f"{MODEL} v2 (*): production, approved by kelley"],
        "rollback": [f"{MODEL} (*): v1 is production again"],
        "policy": ['"auto_promote": true', '"min_improvement": 0.002', '"updated_by": "ops"'],
        "export": ["exported to"],
    }
    assert [shlex.split(line)[2] for line in lines] == [*expected, "export"]
    *lines, as_mlflow = lines
    printed = [readme.ok(line, *expected[shlex.split(line)[2]]) for line in lines]
    assert (Path(re.findall(r"exported to (.*) \(", printed[-1])[0]) / "predict.py").is_file()
    if importlib.util.find_spec("mlflow") is None and not IN_CI:  # requirements/dev.lock has it
        refused = readme.run(as_mlflow)
        assert refused.code == 2 and "pip install 'modelyard[mlflow]'" in refused.stderr
        return
    folder = re.findall(r"exported to (.*) \(", readme.ok(as_mlflow, "mlflow.pyfunc"))[0]
    assert (Path(folder) / "MLmodel").is_file()


def test_predict_and_labels_with_curl(readme: Readme) -> None:
    block = readme_block(REGISTRY, "bash", containing='"tenant": "m00042"')
    (predict,) = shell_commands(block)
    with readme.server.client() as client:
        production = client.versions(MODEL, stage="production")[0]["version"]
    answer = json.loads(readme.ok(predict))
    assert shown_keys(block) <= answer.keys(), answer
    assert (answer["version"], answer["served_by_tenant"]) == (production, "*")
    assert len(answer["scores"]) == 1 and 0 <= answer["scores"][0] <= 1
    readme.request_ids.append(answer["request_id"])

    block = readme_block(REGISTRY, "bash", containing="/labels")
    post, from_file = shell_commands(block)
    (shown,) = re.findall(r"# -> (\{.*\})", block)
    assert json.loads(readme.ok(post)) == json.loads(shown)
    # labels.parquet, under the server's data root: a label for a second prediction.
    later = json.loads(readme.ok(predict))["request_id"]
    pq.write_table(pa.table({"request_id": [later], "row": [0], "label": [0]}),
                   readme.data / "labels.parquet")
    readme.ok(from_file, f"1 labels added to '{MODEL}': 1 matched a logged prediction, "
                         "0 unknown")


def test_explanation_with_curl(readme: Readme) -> None:
    block = readme_block(REGISTRY, "bash", containing='"explain": true')
    (command,) = shell_commands(block)
    answer = json.loads(readme.ok(command))
    assert shown_keys(block) <= answer_keys(answer), answer
    explanation = answer["explanation"]
    (row,) = explanation["rows"]
    assert sorted(c["feature"] for c in row["contributions"]) == ["charge_amount", "charge_type"]
    assert row["base_value"] + sum(c["contribution"] for c in row["contributions"]) + \
        row["others"] == pytest.approx(row["margin"], abs=1e-6)


def test_monitoring_commands(readme: Readme) -> None:
    monitor, curl = shell_commands(readme_block("Monitoring", "bash"))
    shown = readme.ok(monitor)
    report = json.loads(readme.ok(curl))
    assert {"features", "prediction", "schema_changes", "decay", "staleness"} <= report.keys()
    assert report["rows"] > 0, report  # the predictions of the tests above, for m00042
    assert str(report["version"]) in shown


def test_online_experiment_python(in_folder: Readme) -> None:
    readme = in_folder
    definition = readme_block("Online experiments", "yaml", containing="type: bandit")
    (Path("experiment.yaml")).write_text(definition)
    (create,) = re.findall(r"^# experiment.yaml: (.*)$", definition, re.M)
    created = readme.ok(create, "running: bandit on fraud prediction model")
    experiment_id = re.findall(r"experiment (\S+) running", created)[0]
    code = readme_block("Online experiments", "python", containing="Client(")
    assert README_URL in code
    namespace: dict[str, Any] = {"row": {"charge_type": "wallet", "charge_amount": 12.5},
                                 "experiment_id": experiment_id}
    try:
        run_printing(code.replace(README_URL, readme.server.url), namespace)
    finally:
        with readme.server.client() as client:
            client.stop_experiment(experiment_id, actor="ana", reason="the README's example")
    answer, card = namespace["answer"], namespace["card"]
    assert answer["experiment"] == experiment_id and answer["arm"] in ("current", "new")
    assert {"arms", "guardrails", "recommendation"} <= card.keys()
    outcomes = {arm["name"]: arm["outcomes"] for arm in card["arms"]}
    assert outcomes == {"current": 0, "new": 0, answer["arm"]: 1}, card["arms"]


def test_pipeline_commands(in_folder: Readme) -> None:
    readme = in_folder
    spec = readme_block("Pipelines", "yaml", containing="steps:")
    Path("fraud-weekly.yaml").write_text(spec)
    # The train step's request_file, under the data roots: the README's request for "fraud",
    # the model the pipeline names.
    (readme.data / "requests").mkdir()
    request = readme_request("fraud")
    (readme.data / "requests" / "fraud.yaml").write_text(yaml.safe_dump(request))
    lines = shell_commands(readme_block("Pipelines", "bash"))
    run_ids: dict[str, str] = {}

    def started(output: str) -> str:
        return re.findall(r"started run (\S+)", output)[0]

    for line in lines:
        verb = shlex.split(line, comments=True)[2]
        if verb == "create":
            readme.ok(line, "pipeline fraud-weekly: fit -> check -> ship -> report")
        elif verb == "run" and "--wait" in line:
            run_ids["first"] = started(readme.ok(line, "succeeded"))
        elif verb == "run":
            run_ids["developer's"] = started(readme.ok(line))
        elif "RUN_ID" not in line:
            readme.ok(line, "fraud-weekly")
        else:  # the runs the README's RUN_IDs stand for
            run_id = run_ids["developer's" if verb == "cancel" else "first"]
            output = readme.ok(line.replace("RUN_ID", run_id), *{
                "status": [f"run {run_id} of fraud-weekly: succeeded"],
                "logs": ["job succeeded", "registered as version 1 of 'fraud'"],
                "cancel": [f"run {run_id}: cancelled"]}.get(verb, []))
            if verb == "rerun":
                run_ids["rerun"] = started(output)
    with readme.server.client() as client:
        rerun = client.wait_pipeline_run(run_ids["rerun"], timeout=120)
        developers = client.pipeline_run(run_ids["developer's"])
    assert rerun["state"] == "succeeded", rerun
    steps = {s["name"]: s for s in rerun["steps"]}
    assert steps["fit"]["reused_from"] == run_ids["first"], steps["fit"]
    # The developer's run ran report.R --long, which runs until it is cancelled.
    report = {s["name"]: s for s in developers["steps"]}["report"]
    assert report["state"] == "cancelled", developers


def test_fleet_tenants_block(in_folder: Readme) -> None:
    readme = in_folder
    block = yaml.safe_load(readme_block("Per-customer fleets", "yaml", containing="tenants:"))
    Path("fleet.yaml").write_text(yaml.safe_dump(readme_request(**block)))
    tenants = block["tenants"]
    output = readme.ok("modelyard train fleet.yaml --wait", "succeeded")
    job_id = re.findall(r"submitted job (\S+)", output)[0]
    with readme.server.client() as client:
        fleet = client.fleet(job_id)
    assert fleet["state"] == "succeeded" and fleet["counts"]["failed"] == 0, fleet["counts"]
    assert sorted((f["kind"], f["tenant"], f["state"]) for f in fleet["fallbacks"]) == [
        ("global", "*", "succeeded"), ("segment", "segment:CA", "succeeded"),
        ("segment", "segment:US", "succeeded")]
    trained = {t["tenant"] for t in fleet["tenants"] if t["job_id"]}
    large = {t["tenant"] for t in fleet["tenants"]
             if t["train_rows"] >= tenants["min_training_rows"]}
    assert trained == large and len(trained) == 3, fleet["tenants"]
    assert {t["state"] for t in fleet["tenants"] if t["job_id"]} == {"succeeded"}
    # Every tenant is served: by its own model, its segment's or the global one.
    assert fleet["counts"]["not_served"] == 0
    assert {t["level"] for t in fleet["tenants"]} <= {"tenant", "segment", "global"}


def test_metrics_scrape_config(readme: Readme) -> None:
    config = yaml.safe_load(readme_block("Metrics", "yaml", containing="scrape_configs:"))
    (job,) = config["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    assert int(target.rsplit(":", 1)[1]) == cli.commands["server"].make_context(
        "server", []).params["port"], "the scrape targets the server's default port"
    answer = httpx.get(f"{readme.server.url}{job['metrics_path']}", timeout=30)
    assert answer.status_code == 200, answer.text
    assert Scrape(answer.text).value("modelyard_jobs", state="succeeded") >= 2
