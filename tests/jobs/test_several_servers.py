"""Several servers on one job store: two real ``modelyard server`` processes on the suite's
PostgreSQL (a fresh database each test) and one artefact store; one is killed, and every job
ends exactly once. SQLite holds one server and says so.

The PostgreSQL tests skip visibly without ``MODELYARD_TEST_POSTGRES_URL`` (and fail in CI).
Leases are 3 s, so a killed server's jobs are taken over within seconds.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from modelyard.client import Client
from modelyard.server import free_port
from tests.conftest import (
    WORKFLOWS,
    ServerProcess,
    example_request,
    fresh_db_url,
    make_home,
    process_alive,
    wait_until,
    with_workflow,
)

LEASE_S = "3"


def _pair(tmp: Path, *extra: str, start_b: bool = True) -> tuple[ServerProcess, ServerProcess]:
    """Two servers on one fresh PostgreSQL database, one artefact store and one data folder;
    both started, or the first alone (``start_b``)."""
    home = make_home(tmp / "a")
    db_url = fresh_db_url("postgres", home)
    common = ["--data-root", str(home / "data"), "--workflows", str(WORKFLOWS),
              "--artifacts", str(tmp / "artifacts"), "--lease-seconds", LEASE_S, *extra]
    servers = []
    for name in ("a", "b"):
        (tmp / name / "home").mkdir(parents=True, exist_ok=True)
        servers.append(ServerProcess(home=tmp / name / "home", db_url=db_url, port=free_port(),
                                     args=common))
    servers[0].start()
    if start_b:
        servers[1].start()
    return servers[0], servers[1]


def _active(client: Client) -> int:
    return int(client.health()["active_jobs"])


def test_a_killed_server_s_jobs_end_once_and_the_survivor_runs_the_queue(tmp_path: Path
                                                                        ) -> None:
    a, b = _pair(tmp_path, "--concurrency", "2", start_b=False)
    request = example_request("tiny.parquet")
    try:
        # Each server's slots filled by jobs submitted to it: long ones on the server to kill
        # (before the other starts, so they are its own), short ones on the survivor.
        with a.client() as on_a:
            doomed = [on_a.train(with_workflow(request, "Sleeps", seconds=120))
                      for _ in range(2)]
            wait_until(lambda: _active(on_a) == 2, 60)
        b.start()
        with a.client() as on_a, b.client() as on_b:
            a_id, b_id = on_a.health()["server_id"], on_b.health()["server_id"]
            slow = [on_b.train(with_workflow(request, "Sleeps", seconds=3)) for _ in range(2)]
            wait_until(lambda: _active(on_b) == 2, 60)
            # Then quick jobs, alternately to both, that wait in the one queue.
            quick = [(on_a if i % 2 == 0 else on_b).train(with_workflow(request, "Tiny"))
                     for i in range(4)]
            assert {on_a.status(j)["transition"]["job_state"] for j in quick} == {"queued"}
            for job in doomed:
                wait_until(lambda job=job: "worker pid" in on_a.logs(job)[0])
            workers = [int(re.findall(r"worker pid (\d+)", on_a.logs(j)[0])[0]) for j in doomed]

            a.kill()
            for job in slow + quick:
                assert on_b.wait(job, timeout=120)["result"]["model_id"].startswith("sha256:")
            wait_until(lambda: all(on_b.status(j)["transition"]["job_state"] == "failed"
                                   for j in doomed), 30)
            statuses = {j: on_b.status(j) for j in doomed + slow + quick}
            logs = {j: on_b.logs(j)[0] for j in statuses}
        # The killed server's workers went with it.
        wait_until(lambda: not any(process_alive(pid) for pid in workers), 15)
    finally:
        a.stop()
        b.stop()

    for job, status in statuses.items():
        moves = [t["job_state"] for t in status["transitions"]]
        ended = "failed" if job in doomed else "succeeded"
        assert moves == ["created", "queued", "running", ended], (job, moves)
        assert len(re.findall(r"\[modelyard\] job running on", logs[job])) == 1, logs[job]
        assert Counter(s["name"] for s in status["steps"])["train"] <= 1
    for job in doomed:
        assert statuses[job]["server_id"] == a_id
        assert re.fullmatch(
            rf"server {re.escape(a_id)} on host \S+ stopped renewing its lease at .* UTC \(it "
            r"ran out at .* UTC\) while the job was running \(step: train\); the job's worker "
            r"went with it; resubmit the request",
            statuses[job]["transition"]["reason"]), statuses[job]["transition"]["reason"]
    assert {statuses[j]["server_id"] for j in slow + quick} == {b_id}
    # Both servers wrote to the one artefact store.
    assert all((tmp_path / "artifacts" / "jobs" / j).is_dir() for j in slow + quick)


def test_a_fleet_whose_server_died_is_finished_by_another(
        tmp_path: Path, fraud_request: dict[str, Any]) -> None:
    a, b = _pair(tmp_path, "--concurrency", "2", start_b=False)
    request = with_workflow(fraud_request, "Sleeps", seconds=1, max_iter=15)
    request["data"]["features"]["names"].append("merchant_id")  # type: ignore[index]
    request["tenants"] = {"column": "merchant_id", "min_training_rows": 300}
    try:
        with a.client() as on_a:
            a_id = on_a.health()["server_id"]
            parent = on_a.train(request)
            wait_until(lambda: on_a.status(parent)["current_step"] == "children", 120)
            a.kill()  # planned, its tenants queued or running on the killed server
        b.start()
        with b.client() as on_b:
            answer = on_b.wait(parent, timeout=180, raise_on_failure=False)
            children = [on_b.status(t["job_id"]) for t in on_b.fleet(parent)["tenants"]
                        if t["job_id"]]
    finally:
        a.stop()
        b.stop()
    # The fleet finished once, by the fleet's own rule (failed only if every tenant failed):
    # its killed server's packs may have held every tenant.
    status = answer["status"]
    succeeded = [c for c in children if c["transition"]["job_state"] == "succeeded"]
    assert [t["job_state"] for t in status["transitions"]] == [
        "created", "queued", "running", "succeeded" if succeeded else "failed"]
    assert status["server_id"] == a_id
    assert status["transition"]["reason"].startswith("fleet done: ")
    assert len(children) >= 3
    for child in children:
        moves = [t["job_state"] for t in child["transitions"]]
        assert moves in (["created", "queued", "running", "succeeded"],
                         ["created", "queued", "running", "failed"]), moves
        if moves[-1] == "failed":  # it ran on the killed server (of this host: failed at once)
            assert child["server_id"] == a_id
            assert re.search(rf"server \(?{re.escape(a_id)}\)? .*resubmit the request",
                             child["transition"]["reason"]), child["transition"]["reason"]


def test_a_schedule_fires_once_per_due_time_with_two_servers(tmp_path: Path) -> None:
    a, b = _pair(tmp_path, "--concurrency", "1", "--scheduler-interval", "0.2")
    name = "every-4s"
    try:
        with a.client() as on_a, b.client() as on_b:
            on_a.create_pipeline({
                "name": name,
                "steps": [{"name": "check", "type": "validate_data",
                           "with": {"path": "tiny.parquet", "min_rows": 10}}],
                "triggers": [{"type": "schedule", "cron": "* * * * * */4"}]})
            started = dt.datetime.now(dt.UTC)
            wait_until(lambda: len(on_b.pipeline_runs(pipeline=name)) >= 3, 60)
            time.sleep(1)  # time for a second server to start a due time again, were it to
            runs = on_b.pipeline_runs(pipeline=name)
            trigger = next(t for t in on_a.pipeline_triggers(name)["triggers"]
                           if t["trigger"] == "schedule")
    finally:
        a.stop()
        b.stop()
    due = sorted(dt.datetime.fromisoformat(r["reason"]["figures"]["scheduled_for"])
                 for r in runs)
    assert len(due) == len(set(due)), due  # no due time fired twice
    assert trigger["fired"] == len(runs)
    # None lost: due times 4 s apart from the first after the pipeline's creation (one that
    # found the previous run still active is skipped: 8 s).
    gaps = {(later - earlier).total_seconds() for earlier, later in itertools.pairwise(due)}
    assert 4.0 in gaps and gaps <= {4.0, 8.0}, due
    assert due[0] - started < dt.timedelta(seconds=5)


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_second_server_on_one_sqlite_file_refuses_to_start(tmp_path: Path,
                                                            server: ServerProcess) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "modelyard", "server", "--port", str(free_port()),
         "--home", str(tmp_path), "--db", server.db_url],
        capture_output=True, text=True, timeout=120)
    out = " ".join((second.stdout + second.stderr).split())
    assert second.returncode == 2, out
    assert re.search(r"error: another modelyard server \(\S+\) runs on the job store "
                     r"sqlite:///\S+modelyard\.db, and SQLite holds one server at a time .* "
                     r"use PostgreSQL for several servers \(README, \"Several servers\"\)",
                     out), out
    with server.client() as client:
        assert client.health()["status"] == "ok"  # the first one runs on
