"""What a client can learn of the server and what it can make it do, through the real server:
answers carry no traceback and no server path unless the server runs with ``--debug`` (the job's
log keeps them for operators); a path outside the data roots answers the same whether or not
something exists there; odd values (a NUL in a path, numbers past int64) are 422s, and a log
read past its end is empty, not a 500."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.client import Client
from tests.conftest import ServerProcess, start_server, with_workflow

# What the answers show and which values are refused is the API's and the worker's, whatever
# the job store: the tests on the shared server run on SQLite alone.
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("debug"), "sqlite", "--concurrency", "1",
                        "--debug")
    yield proc
    proc.stop()


def _failed(client: Client, request: dict[str, Any]) -> dict[str, Any]:
    """Run ``request`` to its end (failed); its answer from GET /jobs/{id}."""
    job_id = client.train(request)
    client.wait(job_id, timeout=120, raise_on_failure=False)
    return client.job(job_id)


def _server_paths(server: ServerProcess) -> list[str]:
    return [str(server.home), str(server.home.resolve())]


@SQLITE
def test_answers_show_no_traceback_nor_server_path(server: ServerProcess, client: Client,
                                                   fraud_request: dict[str, Any]) -> None:
    raised = _failed(client, with_workflow(fraud_request, "Raises", max_depth=7))
    info = raised["exception_info"]
    assert (info["type"], info["message"]) == ("ValueError", "boom: max_depth=7 is not allowed")
    assert info["traceback"] is None
    log, _ = client.logs(raised["status"]["job_id"])
    assert "Traceback (most recent call last)" in log and "raise ValueError" in log

    missing = copy.deepcopy(fraud_request)
    missing["data"]["features"]["path"] = "nope.parquet"
    answer = _failed(client, missing)
    listed = client.jobs(project=fraud_request["metadata"]["project"])["jobs"]
    # What quotes errors (log_file and the result's artefact paths name files by contract).
    shown = json.dumps([answer["exception_info"], answer["status"]["transitions"],
                        [job["error"] for job in listed]])
    assert "data path nope.parquet does not exist (looked in: <data root>" in shown
    for path in _server_paths(server):
        assert path not in shown

    # An error answer of the API itself.
    labels = httpx.post(f"{server.url}/labels", json={"model_name": "m", "path": "nope.parquet"})
    assert labels.status_code == 422
    assert "(looked in: <data root>" in labels.json()["message"]
    assert all(path not in labels.text for path in _server_paths(server))


def test_a_debug_server_shows_them(debug_server: ServerProcess,
                                   fraud_request: dict[str, Any]) -> None:
    with debug_server.client() as client:
        raised = _failed(client, with_workflow(fraud_request, "Raises", max_depth=7))
        assert "raise ValueError" in raised["exception_info"]["traceback"]
    labels = httpx.post(f"{debug_server.url}/labels",
                        json={"model_name": "m", "path": "nope.parquet"})
    assert f"(looked in: {debug_server.home / 'data'}" in labels.json()["message"]


@SQLITE
def test_outside_the_data_roots_answers_the_same_whether_or_not_it_exists(
        server: ServerProcess, http: httpx.Client) -> None:
    assert (server.home / "server.log").is_file()  # beside the data root, not in it
    answers = {}
    for path in ("../server.log", "../no-such.log", "/etc/passwd", "/etc/no-such-file",
                 "../../../../../../../../etc/passwd"):
        answer = http.post("/labels", json={"model_name": "m", "path": path})
        answers[path] = (answer.status_code, answer.json()["message"].replace(path, "PATH"))
    assert set(answers.values()) == {(403, (
        "data path PATH is outside the configured data roots; move the data under one of them "
        "or start the server with --data-root"))}, answers


@SQLITE
def test_a_nul_character_in_a_labels_path_is_refused(http: httpx.Client) -> None:
    answer = http.post("/labels", json={"model_name": "m", "path": "a\u0000.parquet"})
    assert answer.status_code == 422 and "holds a NUL character" in answer.json()["message"]


@SQLITE
@pytest.mark.parametrize("row", [2**31, 2**70])
def test_a_label_row_past_the_label_logs_int32_is_refused(http: httpx.Client, row: int) -> None:
    answer = http.post("/labels", json={"model_name": "m", "labels": [
        {"request_id": "r", "row": row, "label": 1}]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "labels", 0, "row"]


@SQLITE
def test_a_labels_file_with_a_row_past_int32_is_refused(server: ServerProcess,
                                                        http: httpx.Client) -> None:
    pq.write_table(pa.table({"request_id": ["r"], "row": pa.array([2**40], pa.int64()),
                             "label": [1.0]}), server.home / "data" / "big-row-labels.parquet")
    answer = http.post("/labels", json={"model_name": "m", "path": "big-row-labels.parquet"})
    assert answer.status_code == 422
    assert "column 'row' is not whole numbers of at most 32 bits" in answer.json()["message"]


@SQLITE
def test_a_log_read_from_past_its_end_is_empty(http: httpx.Client, client: Client,
                                               fraud_request: dict[str, Any]) -> None:
    """From int64's largest offset (a seek that far failed with EINVAL): nothing, and the
    offset where the log ends."""
    job_id = _failed(client, with_workflow(fraud_request, "Raises"))["status"]["job_id"]
    size = len(http.get(f"/jobs/{job_id}/logs").content)
    answer = http.get(f"/jobs/{job_id}/logs", params={"offset": 2**63 - 1})
    assert (answer.status_code, answer.text, answer.headers["x-log-offset"]) == (
        200, "", str(size))
    answer = http.get(f"/jobs/{job_id}/logs", params={"offset": 2**63})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "offset"]

