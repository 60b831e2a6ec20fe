"""The Ray executor on a real Ray cluster: a head node and a worker node on this machine.

The head node has no CPUs, so every job must run on the worker node; each test proves where its
job ran from the Ray node id the task reports (in the job's ``worker_host`` and its log).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.client import Client
from modelyard.errors import JobFailed
from modelyard.server import free_port
from tests.conftest import (
    IN_CI,
    ServerProcess,
    process_alive,
    start_server,
    wait_until,
    with_workflow,
)

# CI installs every extra, so there a missing Ray fails this module instead of skipping it.
if IN_CI:
    import ray  # noqa: F401
else:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'modelyard[ray]')")

pytestmark = pytest.mark.slow

# Offline and quiet: no usage stats, no uv-run runtime environments.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
RAY_CLI = (shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
           or "ray")


@dataclasses.dataclass
class RayCluster:
    address: str
    head_id: str
    worker_id: str
    client_address: str  # the head's Ray Client server: ray://HOST:PORT


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    # Short: Ray's unix socket paths live under the temp dir and must stay under 107 bytes.
    temp = tempfile.mkdtemp(prefix="modelyard-ray-")
    # Ray Client's proxier forks a server per client while its gRPC threads run; with gRPC's
    # fork handlers on, the child can abort before it execs (ray-project/ray#63202). Without
    # them the child just execs.
    env = {**os.environ, **RAY_ENV, "GRPC_ENABLE_FORK_SUPPORT": "false"}
    port, client_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    common = ["--object-store-memory=100000000", "--disable-usage-stats"]
    groups: list[int] = []
    try:
        for args in (
            ["--head", f"--port={port}", "--num-cpus=0", '--resources={"head": 1}',
             "--include-dashboard=false", f"--temp-dir={temp}",
             f"--ray-client-server-port={client_port}"],
            [f"--address={address}", "--num-cpus=1", '--resources={"worker_node": 1}'],
        ):
            proc = subprocess.Popen([RAY_CLI, "start", *args, *common],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
            groups.append(proc.pid)  # session leader: its pid is the node's process group
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"ray start {' '.join(args)} failed:\n{out}")
        nodes = _node_ids(address, env)
        yield RayCluster(address, head_id=nodes["head"], worker_id=nodes["worker_node"],
                         client_address=f"ray://127.0.0.1:{client_port}")
    finally:
        for group in groups:  # the processes of the two nodes we started, and only those
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _node_ids(address: str, env: dict[str, str]) -> dict[str, str]:
    """``{"head": id, "worker_node": id}``, by each node's custom resource, once both joined."""
    script = (
        "import json, ray, time\n"
        f"ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False)\n"
        "for _ in range(100):\n"
        "    nodes = {r: n['NodeID'] for n in ray.nodes() if n['Alive']\n"
        "             for r in ('head', 'worker_node') if r in n['Resources']}\n"
        "    if len(nodes) == 2: break\n"
        "    time.sleep(0.2)\n"
        "print(json.dumps(nodes))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    nodes: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    assert set(nodes) == {"head", "worker_node"}, out
    return nodes


@pytest.fixture(scope="module")
def ray_server(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("ray-server"), "sqlite", "--executor", "ray",
                        "--ray-address", ray_cluster.address, "--concurrency", "2", env=RAY_ENV)
    yield proc
    proc.stop()


@pytest.fixture
def client(ray_server: ServerProcess) -> Iterator[Client]:
    with ray_server.client() as c:
        yield c


def ray_fleet(fraud_request: dict[str, object], min_rows: int, workflow: str | None = None,
              **params: object) -> dict[str, object]:
    request = copy.deepcopy(fraud_request)
    if workflow is not None:
        request = with_workflow(request, workflow, **params)
    request["metadata"]["model_name"] = f"ray-fleet-{min_rows}"  # type: ignore[index]
    request["data"]["features"]["names"].append("merchant_id")  # type: ignore[index]
    request["tenants"] = {"column": "merchant_id", "min_training_rows": min_rows,
                          "global_model": False}
    return request


def test_a_fleets_tenants_run_packed_in_warm_ray_workers(
    client: Client, ray_cluster: RayCluster, fraud_request: dict[str, object]
) -> None:
    parent = client.train(ray_fleet(fraud_request, 500))
    assert client.wait(parent, timeout=120)["status"]["transition"]["job_state"] == "succeeded"
    fleet = client.fleet(parent)
    jobs = [t["job_id"] for t in fleet["tenants"] if t["job_id"]]
    assert len(jobs) >= 3 and fleet["counts"]["succeeded"] == len(jobs)
    pids = set()
    for job_id in jobs:
        assert client.status(job_id)["worker_host"].endswith(
            f"(ray node {ray_cluster.worker_id})")
        text = client.logs(job_id)[0]
        found = re.findall(rf"running on Ray node {ray_cluster.worker_id}, .* worker pid "
                           r"(\d+), packed$", text, re.M)
        assert len(found) == 1, text  # its own output only, not its pack-mates'
        pids.add(found[0])
    # Warm processes ran several each: no task, and no worker start-up, per tenant.
    assert len(pids) < len(jobs)


def test_a_tenant_that_kills_its_pack_worker_fails_alone_naming_the_node(
    client: Client, ray_cluster: RayCluster, fraud_request: dict[str, object], tmp_path: Path
) -> None:
    marker = tmp_path / "kill"
    marker.write_text("x")
    request = ray_fleet(fraud_request, 200, "FailsForOne", how="kill",
                        fail_marker=str(marker), fail_tenant="m00003")
    parent = client.train(request)
    client.wait(parent, timeout=120, raise_on_failure=False)
    fleet = client.fleet(parent)
    failed = [t for t in fleet["tenants"] if t["state"] == "failed"]
    assert [t["tenant"] for t in failed] == ["m00003"], failed
    assert "the Ray worker running the job's pack on " in failed[0]["reason"]
    assert f"(ray node {ray_cluster.worker_id}) died" in failed[0]["reason"]
    # Its pack-mates not yet run were queued again once, and succeeded in a new pack.
    children = client.jobs(parent_id=parent, limit=1000)["jobs"]
    lost = [c for c in children if c["state"] == "failed" and c["tenant"] != "m00003"]
    assert lost, "the kill should have stranded at least one pack-mate"
    for child in lost:
        assert "not run: the worker it was packed into died while it ran job" in child["error"]
        assert "queued again as job" in client.logs(child["job_id"])[0]
        tenant = next(t for t in fleet["tenants"] if t["tenant"] == child["tenant"])
        assert tenant["state"] == "succeeded" and tenant["job_id"] != child["job_id"]


def test_job_runs_on_the_worker_node_with_logs_and_artefacts(
    client: Client, ray_cluster: RayCluster, fraud_request: dict[str, object]
) -> None:
    job_id = client.train(with_workflow(fraud_request, "Chatty"))
    answer = client.wait(job_id, timeout=120)
    result = answer["result"]
    assert result["model_id"].startswith("sha256:")
    assert Path(result["evaluation_holdout_data_path"]).is_file()
    assert json.loads(Path(result["metrics_path"]).read_text())["roc_auc"] > 0.5
    status = client.status(job_id)
    assert [s["name"] for s in status["steps"]] == [
        "resolve_workflow", "load", "filter", "split", "train", "serialize", "evaluate"]
    # The proof: the task ran on the worker node, never on the head (which has no CPUs).
    assert status["worker_host"].endswith(f"(ray node {ray_cluster.worker_id})")
    text, _ = client.logs(job_id)
    assert f"running on Ray node {ray_cluster.worker_id}" in text
    assert ray_cluster.head_id not in text
    for line in ("hello from stdout", "hello from stderr", "hello from a subprocess",
                 "step train: done", "job running on the ray executor", "job succeeded"):
        assert line in text
    assert text.index("hello from stdout") < text.index("job succeeded")


def test_a_pipelines_steps_run_as_ray_tasks_on_the_worker_node(
    client: Client, ray_cluster: RayCluster, fraud_request: dict[str, object]
) -> None:
    request = copy.deepcopy(fraud_request)
    request["metadata"]["model_name"] = "ray-pipeline"  # type: ignore[index]
    client.create_pipeline({"name": "ray-pipeline", "steps": [
        {"name": "check", "type": "validate_data", "with": {
            "path": "payments.parquet", "min_rows": 1_000, "label": "has_fraud_dispute",
            "min_positives": 10}},
        {"name": "fit", "type": "train", "needs": ["check"], "with": request}]})
    run = client.wait_pipeline_run(client.run_pipeline("ray-pipeline"), timeout=240)
    assert run["state"] == "succeeded", (run["error"], client.pipeline_logs(run["run_id"]))
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["check"]["outputs"]["rows"] == 20_000
    for step in steps.values():
        status = client.status(step["job_id"])
        assert status["worker_host"].endswith(f"(ray node {ray_cluster.worker_id})"), step


@pytest.mark.skipif(importlib.util.find_spec("grpc") is None and not IN_CI,
                    reason="Ray Client needs grpcio (pip install 'modelyard[ray]')")
def test_a_server_outside_the_cluster_runs_jobs_through_ray_client(
    ray_cluster: RayCluster, tmp_path: Path, fraud_request: dict[str, object]
) -> None:
    proc = start_server(tmp_path, "sqlite", "--executor", "ray", "--ray-address",
                        ray_cluster.client_address, "--concurrency", "1", env=RAY_ENV)
    try:
        with proc.client() as client:
            job_id = client.train(with_workflow(fraud_request, "Chatty"))
            result = client.wait(job_id, timeout=180)["result"]
            assert json.loads(Path(result["metrics_path"]).read_text())["roc_auc"] > 0.5
            status = client.status(job_id)
            assert status["worker_host"].endswith(f"(ray node {ray_cluster.worker_id})")
            text, _ = client.logs(job_id)
            assert "hello from stdout" in text and "step train: done" in text
            assert text.index("hello from stdout") < text.index("job succeeded")
    finally:
        proc.stop()


def test_a_failing_workflow_fails_the_job_with_its_message(
    client: Client, fraud_request: dict[str, object]
) -> None:
    job_id = client.train(with_workflow(fraud_request, "Raises", max_depth=99))
    with pytest.raises(JobFailed, match="boom: max_depth=99 is not allowed") as failed:
        client.wait(job_id, timeout=120)
    assert failed.value.exception_info["step"] == "train"  # type: ignore[index]
    assert "ValueError: boom" in client.logs(job_id)[0]


def test_a_killed_worker_fails_the_job_once(
    client: Client, fraud_request: dict[str, object]
) -> None:
    job_id = client.train(with_workflow(fraud_request, "Killed"))
    with pytest.raises(JobFailed, match="the Ray worker process died before the job finished"):
        client.wait(job_id, timeout=120)
    states = [t["job_state"] for t in client.status(job_id)["transitions"]]
    assert states == ["created", "queued", "running", "failed"]


def test_cancel_kills_the_ray_task(client: Client, fraud_request: dict[str, object]) -> None:
    job_id = client.train(with_workflow(fraud_request, "Sleeps", seconds=120, child=True))
    pids: list[int] = []

    def started() -> bool:
        text = client.logs(job_id)[0]
        pids[:] = [int(p) for p in re.findall(r"^(?:worker|child) pid (\d+)$", text, re.M)]
        return len(pids) == 2

    wait_until(started, timeout=60)
    assert all(process_alive(p) for p in pids)
    assert client.cancel(job_id)["transition"]["job_state"] == "cancelled"
    wait_until(lambda: not any(process_alive(p) for p in pids), timeout=15)
    with pytest.raises(JobFailed, match="cancelled"):
        client.wait(job_id, timeout=10)
    # The worker node's only CPU is free again: the next job runs.
    assert client.wait(client.train(with_workflow(fraud_request, "Tiny")), timeout=120)


def test_a_gpu_job_on_a_cluster_without_gpus_fails_at_once(
    client: Client, fraud_request: dict[str, object]
) -> None:
    request = with_workflow(fraud_request, "Tiny")
    request["compute_resource"] = "GPU"
    started = time.monotonic()
    with pytest.raises(JobFailed, match="no node in the Ray cluster has a GPU: the job needs "
                                        "1 CPU, 1 GPU"):
        client.wait(client.train(request), timeout=60)
    assert time.monotonic() - started < 10


def test_resources_follow_compute_resource_then_the_request() -> None:
    from modelyard.executors.ray_resources import RayOptions, infeasibility, task_resources
    from modelyard.synthetic import example_request

    def need(compute: str, options: RayOptions | None = None, **resources: float
             ) -> dict[str, float]:
        return task_resources({**example_request("x.parquet"), "compute_resource": compute,
                               "resources": resources}, options or RayOptions())

    assert need("CPU") == {"CPU": 1}
    assert need("GPU") == {"CPU": 1, "GPU": 1}
    assert need("HIGH_MEMORY") == {"CPU": 1, "memory": 8 * 2**30}
    assert need("HIGH_MEMORY", num_cpus=4, memory_gb=32) == {"CPU": 4, "memory": 32 * 2**30}
    options = RayOptions.parse((("num_gpus", "2"), ("high_memory_gb", "16")))
    assert need("GPU", options) == {"CPU": 1, "GPU": 2}
    assert need("HIGH_MEMORY", options)["memory"] == 16 * 2**30
    node = {"Alive": True, "Resources": {"CPU": 8.0, "memory": 16.0 * 2**30}}
    assert infeasibility(need("HIGH_MEMORY", options), [node]) is None
    assert infeasibility(need("CPU", num_cpus=16), [node]) == (
        "no single node in the Ray cluster is that large: the job needs 16 CPU, 0 GPU, the "
        "nodes have 8 CPU, 0 GPU, 16 GiB memory")
    with pytest.raises(Exception, match="executor option 'image' is not one the ray executor"):
        RayOptions.parse((("image", "x"),))
    table = (Path(__file__).parents[2] / "docs" / "ray.md").read_text()
    documented = re.findall(r"^\| `(\w+)` \| ", table, re.M)
    assert documented == [f.name for f in dataclasses.fields(RayOptions)]


def test_an_unreachable_cluster_stops_the_server_with_the_next_step(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"cannot reach the Ray cluster at --ray-address "
                                           r"127\.0\.0\.1:\d+ .*start a cluster with `ray start"):
        start_server(tmp_path, "sqlite", "--executor", "ray", "--ray-address",
                     f"127.0.0.1:{free_port()}", env=RAY_ENV)
