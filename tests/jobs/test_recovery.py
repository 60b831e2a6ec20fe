"""Nothing is lost when the server dies: after ``kill -9`` and a restart, queued jobs run and
jobs whose worker vanished end failed with a reason that says so."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from modelyard.errors import JobFailed
from tests.conftest import ServerProcess, example_request, start_server, with_workflow


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[
        2] != "Z"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_then_restart_recovers_every_job(tmp_path: Path, backend: str) -> None:
    server = start_server(tmp_path, backend, "--concurrency", "1")
    request = example_request("tiny.parquet")
    try:
        with server.client() as client:
            running = client.train(with_workflow(request, "Sleeps", seconds=300))
            _wait_for(lambda: "worker pid" in client.logs(running)[0])
            worker = int(re.findall(r"worker pid (\d+)", client.logs(running)[0])[0])
            queued = client.train(with_workflow(request, "Tiny"))
            assert client.status(queued)["transition"]["job_state"] == "queued"

        server.kill()
        # The orphaned worker notices its server is gone and exits by itself.
        _wait_for(lambda: not _alive(worker), timeout=15)

        restarted = ServerProcess(home=server.home, db_url=server.db_url, port=server.port,
                                  args=server.args).start()
        with restarted.client() as client:
            with pytest.raises(JobFailed, match=r"the worker for this job vanished: its server "
                                                r".* stopped while the job was running \(step: "
                                                r"train\); resubmit the request"):
                client.wait(running, timeout=30)
            assert client.wait(queued, timeout=60)["result"]["model_id"].startswith("sha256:")
            states = [t["job_state"] for t in client.status(running)["transitions"]]
            assert states == ["created", "queued", "running", "failed"]
        restarted.stop()
    finally:
        server.stop()
