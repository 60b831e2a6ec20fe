"""``benchmarks/fleet.py --executor ray``: the fleet on a real local Ray cluster beside the local
executor, on the same number of CPUs, in alternating rounds.

The cluster is one head node started here with ``--num-cpus`` equal to the local run's cores
(and concurrency): both executors then have the same worker slots on the same machine. The
cluster's processes are ours alone and are killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from modelyard.client import Client
from modelyard.server import EmbeddedServer
from modelyard.settings import Settings
from modelyard.synthetic import example_request

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}

FleetRun = Callable[[Client, int], tuple[float, dict[str, Any], dict[str, Any]]]


@contextlib.contextmanager
def local_ray_cluster(cpus: int) -> Iterator[str]:
    """A one-node Ray cluster with ``cpus`` CPUs; yields its address."""
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    temp = tempfile.mkdtemp(prefix="my-ray-")  # Ray's socket paths must stay short
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **RAY_ENV}
    proc = subprocess.Popen(
        [ray_cli, "start", "--head", f"--port={port}", f"--num-cpus={cpus}",
         "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats",
         "--object-store-memory=200000000"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{out}")
        os.environ.update(RAY_ENV)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the node's processes: its session
        shutil.rmtree(temp, ignore_errors=True)


def compare(home: Path, cores: int, rounds: int, min_rows: int, fleet_run: FleetRun) -> None:
    """Alternate the fleet on the local executor and on Ray; print models/s and the ratio."""
    local = Settings.load(home=home / "local", data_roots=[home / "data"], concurrency=cores)
    with local_ray_cluster(cores) as address:
        on_ray = Settings.load(home=home / "ray", data_roots=[home / "data"],
                               concurrency=cores, executor="ray", ray_address=address)
        with EmbeddedServer(local) as a, Client(a.url) as local_client, \
                EmbeddedServer(on_ray) as b, Client(b.url) as ray_client:
            for client in (local_client, ray_client):  # warm up
                client.wait(client.train(example_request("payments.parquet")), timeout=600)
            rates: dict[str, list[float]] = {"local": [], "ray": []}
            for i in range(rounds):
                line = []
                for name, client in (("local", local_client), ("ray", ray_client)):
                    elapsed, _, fleet = fleet_run(client, min_rows)
                    models = fleet["counts"]["succeeded"]
                    rates[name].append(models / elapsed)
                    line.append(f"{name} {models} models in {elapsed:.2f} s = "
                                f"{models / elapsed:.1f}/s ({fleet['counts']['failed']} failed)")
                print(f"  round {i + 1}: " + "   ".join(line)
                      + f"   ray/local {rates['ray'][-1] / rates['local'][-1]:.2f}")
    local_rate, ray_rate = statistics.median(rates["local"]), statistics.median(rates["ray"])
    ratio = statistics.median(r / lo for r, lo in zip(rates["ray"], rates["local"], strict=True))
    print(f"local executor: {local_rate:.1f} models/s; ray executor ({cores} CPUs, one node): "
          f"{ray_rate:.1f} models/s (medians of {rounds} rounds)")
    print(f"ray / local throughput, median of {rounds} rounds: {ratio:.2f}  "
          f"(target >= 0.80: {'PASS' if ratio >= 0.8 else 'MISS'})")
