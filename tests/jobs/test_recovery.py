"""Nothing is lost when the server dies: after ``kill -9`` and a restart, queued jobs run and
jobs whose worker vanished end failed with a reason that says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelyard.errors import JobFailed
from tests.conftest import (
    ServerProcess,
    example_request,
    process_alive,
    start_server,
    wait_until,
    with_workflow,
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_then_restart_recovers_every_job(tmp_path: Path, backend: str) -> None:
    server = start_server(tmp_path, backend, "--concurrency", "1")
    request = example_request("tiny.parquet")
    try:
        with server.client() as client:
            running = client.train(with_workflow(request, "Sleeps", seconds=300))
            wait_until(lambda: "worker pid" in client.logs(running)[0])
            worker = int(re.findall(r"worker pid (\d+)", client.logs(running)[0])[0])
            queued = client.train(with_workflow(request, "Tiny"))
            assert client.status(queued)["transition"]["job_state"] == "queued"

        server.kill()
        # The orphaned worker notices its server is gone and exits by itself.
        wait_until(lambda: not process_alive(worker), timeout=15)

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
