"""Each job runs in its own worker process: crashes, exits, memory exhaustion, cancel and timeout
affect only that job, and the server stays up."""

from __future__ import annotations

import re
import time

import pytest

from modelyard.client import Client
from modelyard.errors import Conflict, JobFailed
from tests.conftest import process_alive, wait_until, with_workflow

# A crash, a memory limit or a timeout is the worker's and the executor's; the job store only
# records the failure: SQLite alone. Cancels move jobs in the store, and run on every backend.
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _pids(client: Client, job_id: str, what: str) -> list[int]:
    text, _ = client.logs(job_id)
    return [int(p) for p in re.findall(rf"{what} pid (\d+)", text)]


@SQLITE
def test_crashing_workflows_fail_alone(client: Client, fraud_request: dict[str, object]) -> None:
    bad = {name: client.train(with_workflow(fraud_request, name))
           for name in ("Killed", "Exits", "Raises")}
    good = client.train(with_workflow(fraud_request, "Tiny"))
    assert client.wait(good, timeout=120)["result"]["model_id"].startswith("sha256:")
    expected = {
        "Killed": r"killed by SIGKILL .*out of memory",
        "Exits": r"exited with code 3 before reporting a result",
        "Raises": r"boom",
    }
    for name, job_id in bad.items():
        with pytest.raises(JobFailed, match=expected[name]):
            client.wait(job_id, timeout=120)
    assert client.health()["status"] == "ok"


@SQLITE
def test_memory_limit_fails_the_job_not_the_server(
    client: Client, fraud_request: dict[str, object]
) -> None:
    job_id = client.train(with_workflow(fraud_request, "Hog", gib=64))
    with pytest.raises(JobFailed, match="MemoryError in step train") as failed:
        client.wait(job_id, timeout=120)
    assert failed.value.exception_info["step"] == "train"  # type: ignore[index]
    assert client.health()["status"] == "ok"


def test_cancel_kills_the_worker_and_its_children(
    client: Client, fraud_request: dict[str, object]
) -> None:
    job_id = client.train(with_workflow(fraud_request, "Sleeps", seconds=120, child=True))
    wait_until(lambda: len(_pids(client, job_id, "child")) == 1
                and len(_pids(client, job_id, "worker")) == 1)
    worker, child = _pids(client, job_id, "worker")[0], _pids(client, job_id, "child")[0]
    assert process_alive(worker) and process_alive(child)
    status = client.cancel(job_id)
    assert status["transition"]["job_state"] == "cancelled"
    wait_until(lambda: not process_alive(worker) and not process_alive(child), timeout=10)
    with pytest.raises(JobFailed, match="cancelled"):
        client.wait(job_id, timeout=10)
    with pytest.raises(Conflict, match="already ended"):
        client.cancel(job_id)


def test_cancel_a_queued_job_before_it_runs(
    client: Client, fraud_request: dict[str, object]
) -> None:
    sleepers = [client.train(with_workflow(fraud_request, "Sleeps", seconds=120))
                for _ in range(2)]  # the test server has two slots
    wait_until(lambda: all(client.status(j)["transition"]["job_state"] == "running"
                            for j in sleepers))
    queued = client.train(with_workflow(fraud_request, "Tiny"))
    time.sleep(0.3)
    assert client.status(queued)["transition"]["job_state"] == "queued"
    client.cancel(queued)
    for job_id in sleepers:
        client.cancel(job_id)
    status = client.status(queued)
    assert [t["job_state"] for t in status["transitions"]] == ["created", "queued", "cancelled"]
    assert status["steps"] == []


@SQLITE
def test_timeout_kills_a_job_that_runs_too_long(
    client: Client, fraud_request: dict[str, object]
) -> None:
    request = with_workflow(fraud_request, "Sleeps", seconds=120)
    request["timeout_seconds"] = 1.5
    started = time.monotonic()
    job_id = client.train(request)
    with pytest.raises(JobFailed, match=r"timed out after 1.5 s and was killed"):
        client.wait(job_id, timeout=60)
    assert time.monotonic() - started < 30
    worker = _pids(client, job_id, "worker")
    if worker:
        wait_until(lambda: not process_alive(worker[0]), timeout=10)
