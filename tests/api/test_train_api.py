"""The train -> job -> result path through the real server, on every job-store backend."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from modelyard.client import Client
from modelyard.errors import NotFound, RequestError
from tests.conftest import ServerProcess, wait_until, with_workflow

# The request's checks, the route aliases and what the worker writes (its log, its provenance)
# do not touch the job store's SQL: those tests run on SQLite alone. The train path, the job
# list's queries and the long polls run on every backend.
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)
STEPS = ["resolve_workflow", "load", "filter", "split", "train", "serialize", "evaluate"]


def test_train_request_runs_to_a_stored_evaluated_model(
    client: Client, server: ServerProcess, fraud_request: dict[str, object]
) -> None:
    job_id = client.train(fraud_request)
    answer = client.wait(job_id, timeout=120)

    status = answer["status"]
    assert status["job_id"] == job_id
    assert status["transition"]["job_state"] == "succeeded"
    assert [t["job_state"] for t in status["transitions"]] == [
        "created", "queued", "running", "succeeded"]
    assert [s["name"] for s in status["steps"]] == STEPS
    assert all(s["duration_s"] >= 0 for s in status["steps"])
    assert Path(status["log_file"]).is_file()

    result = answer["result"]
    blob = server.home / "artifacts" / "objects" / "sha256" / result["model_id"][7:9] / (
        result["model_id"][9:])
    assert result["model_id"] == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    scores = pd.read_csv(result["evaluation_holdout_data_path"], sep="\t")
    labels = pd.read_csv(result["evaluation_holdout_label_path"], sep="\t")
    assert len(scores) == len(labels) == result["row_counts"]["holdout"] > 0
    assert result["metrics"]["roc_auc"] == pytest.approx(
        roc_auc_score(labels["label"], scores["score"]))
    assert result["metrics"]["roc_auc"] > 0.6
    counts = result["row_counts"]
    assert counts["total"] == 20_000
    assert counts["train"] + counts["holdout"] == counts["after_filters"] < counts["total"]
    provenance = json.loads(Path(result["provenance_path"]).read_text())
    assert provenance["request_hash"].startswith("sha256:")
    assert provenance["data"]["files"][0]["num_rows"] == 20_000
    assert provenance["packages"]["scikit-learn"]


@SQLITE
def test_railyard_and_plural_paths_answer_alike(
    client: Client, server: ServerProcess, fraud_request: dict[str, object]
) -> None:
    job_id = client.train(with_workflow(fraud_request, "Tiny"))
    client.wait(job_id, timeout=120)
    one = httpx.get(f"{server.url}/job/{job_id}/result").json()
    many = httpx.get(f"{server.url}/jobs/{job_id}/result").json()
    assert one == many
    assert set(one) == {"status", "result", "exception_info"}
    assert one["exception_info"] is None
    assert httpx.get(f"{server.url}/job/{job_id}/status").json()["status"]["job_id"] == job_id


@SQLITE
@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["train"].pop("label"), "train.label: Field required"),
        (lambda r: r.update(holdout_sampeling={}), "holdout_sampeling: unknown field"),
        (lambda r: r["filters"][0].update(predicate="Like"), "filters.0.predicate"),
        (lambda r: r["filters"][0].update(feature_value={"number_val": 3}),
         "IsIn needs string_vals or number_vals"),
        (lambda r: r.update(compute_resource="TPU"), "compute_resource"),
    ],
)
def test_malformed_requests_get_422_naming_the_field(
    client: Client, server: ServerProcess, fraud_request: dict[str, object], mutate, field: str
) -> None:
    request = json.loads(json.dumps(fraud_request))
    mutate(request)
    response = httpx.post(f"{server.url}/train", json=request)
    assert response.status_code == 422
    assert field in response.json()["message"]
    with pytest.raises(RequestError, match=field.split(":")[0]):
        client.train(request)
    assert client.jobs(project=fraud_request["metadata"]["project"])["total"] == 0  # type: ignore[index]


def test_jobs_list_filters_and_paginates(client: Client, fraud_request: dict[str, object]) -> None:
    project = fraud_request["metadata"]["project"]  # type: ignore[index]
    ids = [client.train(with_workflow(fraud_request, "Tiny")) for _ in range(3)]
    for job_id in ids:
        client.wait(job_id, timeout=120)
    page = client.jobs(project=project, limit=2)
    assert page["total"] == 3 and len(page["jobs"]) == 2
    rest = client.jobs(project=project, limit=2, offset=2)
    assert {j["job_id"] for j in page["jobs"] + rest["jobs"]} == set(ids)
    assert client.jobs(project=project, state="failed")["total"] == 0
    assert client.jobs(project=project, state="succeeded")["total"] == 3
    assert client.jobs(project=project, owner="nobody")["total"] == 0


def test_unknown_job_is_404(client: Client) -> None:
    with pytest.raises(NotFound, match="no job 'nope'"):
        client.status("nope")


@SQLITE
def test_job_log_captures_worker_output(client: Client, fraud_request: dict[str, object]) -> None:
    job_id = client.train(with_workflow(fraud_request, "Chatty"))
    client.wait(job_id, timeout=120)
    text, offset = client.logs(job_id)
    for line in ("hello from stdout", "hello from stderr", "hello from a subprocess",
                 "step train: done", "job succeeded"):
        assert line in text
    more, same = client.logs(job_id, offset)
    assert more == "" and same == offset


@SQLITE
def test_provenance_records_the_workflow_source_and_its_git_commit(
    client: Client, fraud_request: dict[str, object]
) -> None:
    import subprocess

    from tests.conftest import WORKFLOWS

    job_id = client.train(with_workflow(fraud_request, "Tiny"))
    answer = client.wait(job_id, timeout=120)
    provenance = json.loads(Path(answer["result"]["provenance_path"]).read_text())
    workflow = provenance["workflow"]
    assert workflow["class"] == "workflows_for_api:Tiny"
    assert workflow["source_file"] == str(WORKFLOWS)
    assert workflow["source_sha256"] == "sha256:" + hashlib.sha256(
        WORKFLOWS.read_bytes()).hexdigest()
    head = subprocess.run(["git", "-C", str(WORKFLOWS.parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (CI clones one); a source tarball has no commit
        assert workflow["git_commit"] == head.stdout.strip()
        assert answer["status"]["git_commit"] == head.stdout.strip()


def test_long_polls_answer_at_a_change_at_the_end_or_when_the_time_is_up(
    client: Client, fraud_request: dict[str, object]
) -> None:
    job_id = client.train(with_workflow(fraud_request, "Sleeps", seconds=2))
    wait_until(lambda: client.status(job_id)["current_step"] == "train")

    started = time.monotonic()  # nothing changes within 0.5 s: the job as it is now
    answer = client.result(job_id, wait=0.5, until="done")
    assert 0.4 <= time.monotonic() - started < 1.5
    assert answer["status"]["transition"]["job_state"] == "running"
    assert answer["status"]["current_step"] == "train" and answer["result"] is None
    assert "train" not in [s["name"] for s in answer["status"]["steps"]]  # finished steps

    answer = client.result(job_id, wait=30)  # the next change: the train step ends
    assert "train" in [s["name"] for s in answer["status"]["steps"]]
    answer = client.result(job_id, wait=30, until="done")  # only the end
    assert answer["status"]["transition"]["job_state"] == "succeeded"
    assert answer["result"]["model_id"].startswith("sha256:")

    started = time.monotonic()  # an ended job is answered at once, whatever the wait
    assert client.result(job_id, wait=30)["status"]["transition"]["job_state"] == "succeeded"
    assert time.monotonic() - started < 5
    with pytest.raises(NotFound):
        client.result("0" * 32, wait=5)
