"""How fast does Modelyard serve? Online predict through the real server, beside a minimal
FastAPI endpoint around the same pickled model (and ``mlflow models serve`` when installed).

Cells: {modelyard, baseline} x {1 row, 100 rows} x {1, 16 concurrent clients} on loopback, then
alternating rounds (``--shadow-rounds``) of the same model without and with 2 shadow
versions at 16 clients, then one server with ``--tenants`` (default 2,000)
distinct tenant models behind a memory budget that holds a tenth of them, for uniformly random
tenants. Each cell is a closed loop (a client sends its next request when the answer arrives) that
runs ``--warmup`` seconds unmeasured and then ``--duration`` seconds measured, except the
``--open`` cells after the modelyard grid: an open loop at a fixed rate over 16 connections,
each latency counted from the request's planned send (a closed loop's latency is bound to its
own throughput, 16 / req/s; an open loop shows what a user sees at a given load, and a server
that falls behind is charged for the wait). Each cell reports req/s,
rows/s, p50 and p99 latency, the CPU used (% of one core) by the server, the load generator and
every other process on the machine (a shared machine shows here), the server's CPU per request,
and for modelyard the rows per predict call (how much the micro-batcher merged). The tenants cell
also follows the server's resident memory, since its budget counts pickled bytes.

Targets (the issue):
  * single row, 1 client: p50 <= 2 ms;
  * single row, 16 clients: >= 2x the minimal FastAPI endpoint's req/s, with p99 <= 20 ms;
  * two shadow versions cost <= 10% of throughput (1 and 100 rows, 16 clients);
  * 2,000 tenant models served within the memory budget, every request answered.

Reference on a 2-core machine (the issue): ``mlflow models serve`` ~180 single-row req/s (p99
171 ms at 16 clients), a minimal FastAPI endpoint ~920 req/s (p99 20 ms).

Everything runs in separate processes: the modelyard server (``python -m modelyard server``,
uvicorn, one process), the baseline (uvicorn, one process) and the load generator. The load
generator is lean on purpose (raw HTTP/1.1 over one keep-alive connection per client, request
bytes built before the cell, uvloop, no JSON parsing on the hot path): on a 2-core machine it
shares the CPU with the server under test, so its own CPU share is printed beside each cell.
This file imports only the standard library at the top so that the spawned load generator stays
small; the heavy imports happen inside the functions that need them.

Run::

    python benchmarks/serving.py                 # full: 5 s cells, 2,000 tenants (~2-3 min)
    python benchmarks/serving.py --quick         # smoke check, under 90 s
    python benchmarks/serving.py --profile DIR   # also py-spy the server (stacks in DIR)

A benchmark reports; it does not assert. It exits 0 and prints PASS/MISS against each target.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import importlib.util
import json
import multiprocessing
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _procs import process_tree

HERE = Path(__file__).resolve().parent
SHADOWED_NAME = "fraud prediction model, shadowed"  # the same versions, v2 and v3 shadows
MODEL_NAME = "fraud prediction model"
TENANT_MODEL = "tenant fraud model"
FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
ACTOR = "benchmark"

P50_TARGET_MS = 2.0
P99_TARGET_MS = 20.0
SPEEDUP_TARGET = 2.0
SHADOW_COST_TARGET = 0.10
BUDGET_FRACTION = 0.10  # of the tenant models' bytes: most must be evicted and loaded again


# -- the load generator (a separate process) ------------------------------------------------------


def _loadgen_main(conn: Connection) -> None:
    """Serve cell specs from the parent until it sends None."""
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    while True:
        try:
            spec = conn.recv()
        except EOFError:  # the parent is gone
            return
        if spec is None:
            return
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.perf_counter()
        try:
            out = run(asyncio.wait_for(_cell(spec), spec["warmup"] + spec["duration"] + 60))
        except Exception as exc:  # reported as the cell's result, the parent goes on
            out = {"latencies": b"", "errors": 0, "statuses": {},
                   "check": f"load generator failed: {type(exc).__name__}: {exc}"}
        after = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        out["wall_s"] = time.perf_counter() - wall0
        conn.send(out)


async def _cell(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, requests = spec["host"], spec["port"], spec["requests"]
    clock = time.perf_counter
    start = clock()
    measure_from = start + spec["warmup"]
    stop = measure_from + spec["duration"]
    latencies = array.array("d")
    statuses: dict[int, int] = {}
    checks: list[str] = []

    # Open loop (a rate): each client sends on a schedule and a latency counts from the planned
    # send, so a server that falls behind is charged for the wait (no coordinated omission).
    rate = spec.get("rate") or 0.0
    period = spec["clients"] / rate if rate else 0.0

    async def client(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        n, i, first = len(requests), k * 7919, True
        planned = start + period * k / spec["clients"]
        try:
            while True:
                t0 = clock()
                if period:
                    if planned > t0:
                        await asyncio.sleep(planned - t0)
                    t0, planned = planned, planned + period
                if t0 >= stop:
                    return
                writer.write(requests[i % n])
                i += 1
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                at = head.lower().find(b"content-length:")
                if at < 0:
                    raise ValueError(f"no content-length in the answer: {head[:200]!r}")
                length = int(head[at + 15:head.index(b"\r\n", at)])
                body = await reader.readexactly(length)
                t1 = clock()
                if first:
                    first = False
                    checks.append(_check(body, status, spec["key"], spec["rows"]))
                if measure_from <= t1 <= stop:
                    latencies.append(t1 - t0)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(client(k) for k in range(spec["clients"])))
    errors = sum(v for s, v in statuses.items() if s != 200)
    return {"latencies": latencies.tobytes(), "errors": errors, "statuses": statuses,
            "check": next((c for c in checks if c), "")}


def _check(body: bytes, status: int, key: str, rows: int) -> str:
    """'' if a first answer holds ``rows`` scores under ``key``, else what is wrong."""
    if status != 200:
        return f"HTTP {status}: {body[:300]!r}"
    try:
        scores = json.loads(body)[key]
    except (ValueError, KeyError, TypeError):
        return f"no {key!r} in the answer: {body[:300]!r}"
    return "" if len(scores) == rows else f"{len(scores)} scores for {rows} rows"


class LoadGen:
    """The load generator process; :meth:`run` sends it one cell and waits for the numbers."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_loadgen_main, args=(child,), name="loadgen",
                                 daemon=True)
        self._proc.start()

    def start(self, spec: dict[str, Any]) -> None:
        self._conn.send(spec)

    def done(self, timeout: float = 0.0) -> bool:
        return self._conn.poll(timeout)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = self._conn.recv()
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()


def http_requests(port: int, path: str, bodies: list[bytes]) -> list[bytes]:
    """Whole HTTP/1.1 requests, built once before a cell."""
    return [
        (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
         f"content-length: {len(b)}\r\n\r\n").encode() + b
        for b in bodies
    ]


# -- servers under test ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    args: list[str]
    port: int
    log: Path
    health: str = "/healthz"
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def start(self, timeout: float = 120.0) -> Server:
        import httpx

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env}, cwd=self.cwd,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + self.health, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: workers it may have left

    def cpu_s(self) -> float:
        """CPU seconds the server has used: all its threads and its live child processes (the
        shadow scorer, the training fork server), so work moved to a helper still counts."""
        total = 0
        for pid in process_tree(self.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def thread_env(threads: int) -> dict[str, str]:
    """OpenMP/BLAS threads for a server under test (0: the libraries' defaults)."""
    if threads <= 0:
        return {}
    return {v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS")}


def modelyard_server(home: Path, port: int, env: dict[str, str]) -> Server:
    return Server(
        "modelyard",
        [sys.executable, "-m", "modelyard", "server", "--port", str(port), "--home", str(home),
         "--data-root", str(home / "data"), "--concurrency", "2", "--log-level", "warning"],
        port, home / "server.log", env=env,
    )


def baseline_server(home: Path, port: int, blob: Path, env: dict[str, str]) -> Server:
    return Server(
        "baseline",
        [sys.executable, "-m", "uvicorn", "_baseline_app:app", "--app-dir", str(HERE),
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        port, home / "baseline.log",
        env={**env, "BASELINE_MODEL": str(blob), "BASELINE_FEATURES": ",".join(FEATURES)},
    )


def mlflow_server(home: Path, port: int, model: Any, env: dict[str, str]) -> Server:
    """``mlflow models serve`` of the same fitted model, scoring ``predict_proba``."""
    import mlflow.sklearn

    path = home / "mlflow-model"
    try:
        mlflow.sklearn.save_model(model, str(path), pyfunc_predict_fn="predict_proba",
                                  serialization_format="cloudpickle")
    except TypeError:  # an mlflow without pyfunc_predict_fn: it will serve predict()
        mlflow.sklearn.save_model(model, str(path))
    # mlflow starts `uvicorn` from PATH: this interpreter's scripts first, so that a venv's
    # python run without activating the venv serves with the venv's own uvicorn.
    scripts = str(Path(sys.executable).parent)
    path_env = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    exe = shutil.which("mlflow", path=path_env)
    cmd = [exe] if exe else [sys.executable, "-m", "mlflow"]
    return Server(
        "mlflow",
        [*cmd, "models", "serve", "-m", str(path), "-h", "127.0.0.1", "-p", str(port),
         "--env-manager", "local", "-w", "1"],
        port, home / "mlflow.log", health="/ping", env={**env, "PATH": path_env},
    )


# -- cells ----------------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    clients: int
    rows: int
    rps: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    errors: int = 0
    server_cpu: float = float("nan")
    other_cpu: float = float("nan")
    client_cpu: float = float("nan")
    rows_per_call: float | None = None
    note: str = ""

    @property
    def rows_s(self) -> float:
        return self.rps * self.rows

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request: what it costs, whatever else shares the machine."""
        return self.server_cpu * 1000 / self.rps if self.rps else float("nan")


@dataclass
class Target:
    """One server to load: its port, path and body shape."""

    server: Server
    path: str
    key: str  # where the scores are in the answer
    wrap: str = "rows"  # the body's field holding the rows

    def bodies(self, samples: list[list[dict[str, Any]]], tenants: list[str] | None = None
               ) -> list[bytes]:
        out = []
        for i, rows in enumerate(samples):
            body: dict[str, Any] = {self.wrap: rows}
            if tenants:
                body["tenant"] = tenants[i % len(tenants)]
            out.append(json.dumps(body, separators=(",", ":")).encode())
        return out


def prime(target: Target, samples: list[list[dict[str, Any]]],
          tenants: list[str] | None = None) -> None:
    """Load the model and warm the code paths before the first cell (as a deploy would)."""
    import httpx

    for rows in samples:
        for _ in range(3):
            answer = httpx.post(target.server.url + target.path,
                                content=target.bodies([rows], tenants)[0],
                                headers={"content-type": "application/json"}, timeout=120)
            if answer.status_code != 200:
                raise RuntimeError(f"{target.server.name} answered {answer.status_code}: "
                                   f"{answer.text[:500]}")


def stats(server: Server) -> dict[str, Any]:
    import httpx

    answer: dict[str, Any] = httpx.get(server.url + "/serving/stats", timeout=30).json()
    return answer


def run_cell(gen: LoadGen, target: Target, label: str, samples: list[list[dict[str, Any]]],
             clients: int, args: argparse.Namespace, *, tenants: list[str] | None = None,
             profile: str | None = None, on_poll: Any = None,
             duration: float | None = None, rate: float = 0.0) -> Result:
    """One cell: a closed loop of ``clients``, or with ``rate`` an open loop at that many
    requests a second spread over ``clients`` connections."""
    rows = len(samples[0])
    duration = duration or args.duration
    spec = {"host": "127.0.0.1", "port": target.server.port, "clients": clients, "rows": rows,
            "requests": http_requests(target.server.port, target.path,
                                      target.bodies(samples, tenants)),
            "key": target.key, "warmup": args.warmup, "duration": duration, "rate": rate}
    is_modelyard = target.server.name == "modelyard"
    before = stats(target.server) if is_modelyard else None
    spy = None
    cpu0, busy0, t0 = target.server.cpu_s(), machine_busy_s(), time.perf_counter()
    gen.start(spec)
    if profile:
        time.sleep(args.warmup)
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(target.server.pid), "--rate", "250", "--threads",
             "--gil", "--nonblocking", "--format", "raw",
             "--duration", str(max(1, int(duration))), "-o", profile],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not gen.done(0.25):
        if on_poll is not None:
            on_poll()
    out = gen.result()
    wall = time.perf_counter() - t0
    server_s, busy_s = target.server.cpu_s() - cpu0, machine_busy_s() - busy0
    if spy is not None:
        spy.wait(timeout=60)
    lat = array.array("d")
    lat.frombytes(out["latencies"])
    result = Result(label, clients, rows, errors=out["errors"], server_cpu=server_s / wall,
                    client_cpu=out["cpu_s"] / out["wall_s"], note=out["check"],
                    other_cpu=max(0.0, busy_s - server_s - out["cpu_s"]) / wall)
    if lat:
        ordered = sorted(lat)
        result.rps = len(ordered) / duration
        result.p50_ms = _quantile(ordered, 0.50) * 1000
        result.p99_ms = _quantile(ordered, 0.99) * 1000
    else:
        result.note = result.note or "no answers in the measured window"
    if before is not None:
        after = stats(target.server)
        calls = after["predict_calls"] - before["predict_calls"]
        if calls:
            result.rows_per_call = (after["predicted_rows"] - before["predicted_rows"]) / calls
    if out["statuses"] and set(out["statuses"]) != {200}:
        result.note = (result.note + f" statuses {out['statuses']}").strip()
    if profile:
        result.note = (result.note + " (profiled)").strip()
    print(f"  {_row(result)}", flush=True)
    return result


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _quantile(ordered: list[float], q: float) -> float:
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


HEADER = (f"{'cell':<36}{'req/s':>9}{'rows/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
          f"{'srv cpu':>8}{'ms/req':>7}{'cli cpu':>8}{'others':>8}{'rows/call':>10}")


def _row(r: Result) -> str:
    name = f"{r.label} {r.rows:>3} row{'s' if r.rows > 1 else ' '} {r.clients:>2} client" + (
        "s" if r.clients > 1 else "")
    per_call = f"{r.rows_per_call:10.1f}" if r.rows_per_call is not None else f"{'':10}"
    text = (f"{name:<36}{r.rps:9.0f}{r.rows_s:10.0f}{r.p50_ms:8.2f}{r.p99_ms:8.2f}{r.errors:7d}"
            f"{r.server_cpu:8.0%}{r.cpu_ms:7.2f}{r.client_cpu:8.0%}{r.other_cpu:8.0%}{per_call}")
    return text + (f"  {r.note}" if r.note else "")


# -- setting up -----------------------------------------------------------------------------------


def sample_rows(data: Path, count: int, size: int, seed: int) -> list[list[dict[str, Any]]]:
    """``count`` request bodies' rows, ``size`` rows each, drawn from the synthetic payments."""
    import pandas as pd

    frame = pd.read_parquet(data, columns=FEATURES)
    picked = frame.sample(count * size, replace=len(frame) < count * size, random_state=seed)
    records = json.loads(picked.to_json(orient="records"))  # plain Python values
    return [records[i * size:(i + 1) * size] for i in range(count)]


def train_versions(client: Any, args: argparse.Namespace, name: str = "") -> list[dict[str, Any]]:
    """v1 (production) and two candidates with their own bytes, for the shadow cells."""
    from modelyard.synthetic import example_request

    name = name or MODEL_NAME
    jobs = []
    for rate in (0.1, 0.05, 0.2):
        request = example_request("payments.parquet")
        request["metadata"] = {**request["metadata"], "model_name": name}  # type: ignore[dict-item]
        train = dict(request["train"])  # type: ignore[call-overload]
        train["custom_params"] = {**train["custom_params"], "max_iter": args.max_iter,
                                  "learning_rate": rate}
        request["train"] = train
        jobs.append(client.train(request))
        if len(jobs) == 1:  # v1 first: it is the one the baseline serves too
            client.wait(jobs[0], timeout=600)
    for job in jobs[1:]:
        client.wait(job, timeout=600)
    versions = sorted(client.versions(name), key=lambda v: v["version"])
    client.approve(name, versions[0]["version"], user=ACTOR, comment="benchmark")
    return versions


def blob_path(home: Path, model_id: str) -> Path:
    hexd = model_id.split(":")[1]
    return home / "artifacts" / "objects" / "sha256" / hexd[:2] / hexd[2:]


def wait_for_shadows(server: Server, name: str, sample: list[dict[str, Any]], shadows: int
                     ) -> bool:
    """True once one predict is scored by production and every shadow (the router polls)."""
    import httpx

    def scored() -> int:  # written to the shadow log, or scored and waiting for its next write
        st = stats(server)
        return int(st["shadow_rows"] + st["shadow_buffered"])

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = scored()
        httpx.post(f"{server.url}/predict/{name}", json={"rows": sample}, timeout=30)
        time.sleep(0.6)  # the shadow scorer batches every 0.2 s
        if scored() - before == len(sample) * shadows:
            return True
    return False


TENANT_PARAMS = {"max_iter": 10, "max_depth": 3}  # small models: many per server
TENANT_ROWS = 400


def _fit_tenant_models(job: tuple[str, list[int]]) -> list[bytes]:
    """Fit one small model per seed, each on ``TENANT_ROWS`` rows of its own (a pool worker)."""
    import pickle

    import pandas as pd
    from threadpoolctl import threadpool_limits

    from modelyard.request.loading import parse_request
    from modelyard.runtime.builtin import SklearnWorkflow
    from modelyard.synthetic import example_request

    data, seeds = job
    frame = pd.read_parquet(data)
    workflow = SklearnWorkflow(parse_request(example_request("payments.parquet",
                                                             custom_params=TENANT_PARAMS)))
    blobs = []
    with threadpool_limits(limits=1):
        for seed in seeds:
            sample = frame.sample(TENANT_ROWS, random_state=seed)
            blobs.append(pickle.dumps(workflow.train(sample, sample), protocol=5))
    return blobs


def make_tenant_models(home: Path, data: Path, count: int) -> tuple[list[str], int, float]:
    """``count`` distinct small models, stored as artefacts; (model ids, total bytes, seconds).

    Each is what the platform's ``sklearn`` workflow trains for a tenant (HistGradientBoosting,
    10 iterations of depth 3, on 400 rows of its own), so every model's bytes (its id) differ, as
    2,000 customers' models would. Fitted in two processes (set-up, not measured).
    """
    from concurrent.futures import ProcessPoolExecutor

    from modelyard.artifacts import ArtifactStore

    t0 = time.perf_counter()
    store = ArtifactStore(str(home / "artifacts"))
    ids: list[str] = []
    seen: set[str] = set()
    total = 0
    next_seed = 0
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        while len(ids) < count:  # a second round only if two samples gave the same bytes
            want = count - len(ids)
            seeds = list(range(next_seed, next_seed + want))
            next_seed += want
            chunks = [(str(data), seeds[i::8]) for i in range(8) if seeds[i::8]]
            for blobs in pool.map(_fit_tenant_models, chunks):
                for blob in blobs:
                    model_id = store.put_bytes(blob)
                    if model_id not in seen and len(ids) < count:
                        seen.add(model_id)
                        ids.append(model_id)
                        total += len(blob)
    return ids, total, time.perf_counter() - t0


def register_tenants(home: Path, model_ids: list[str], job_id: str, meta: dict[str, Any]
                     ) -> tuple[list[str], float]:
    """Register and approve one version per tenant straight in the server's registry."""
    from modelyard.registry import store as registry
    from modelyard.sql import make_engine, session_factory

    t0 = time.perf_counter()
    engine = make_engine(f"sqlite:///{home / 'modelyard.db'}")
    tenants = [f"t{i:05d}" for i in range(len(model_ids))]
    try:
        with session_factory(engine)() as session:
            for tenant, model_id in zip(tenants, model_ids, strict=True):
                row = registry.register_version(
                    session, model_name=TENANT_MODEL, tenant=tenant, model_id=model_id,
                    job_id=job_id, metrics={}, model_meta={**meta, "model_id": model_id},
                    holdout={})
                registry.approve_version(session, TENANT_MODEL, row.version, approver=ACTOR,
                                         comment="tenant model", tenant=tenant)
    finally:
        engine.dispose()
    return tenants, time.perf_counter() - t0


# -- the run --------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Online serving benchmark: modelyard beside a "
                                     "minimal FastAPI endpoint (and mlflow when installed).")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per cell")
    parser.add_argument("--shadow-rounds", type=int, default=3,
                        help="alternating plain / 2-shadow rounds (1 and 100 rows, 16 clients)")
    parser.add_argument("--tenants", type=int, default=2000, help="tenant models (0: skip)")
    parser.add_argument("--tenant-duration", type=float, default=15.0,
                        help="measured seconds of the tenants cell (longer: more distinct loads)")
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic rows to train on")
    parser.add_argument("--max-iter", type=int, default=200,
                        help="boosting iterations of the served model (the demo's 200)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="OpenMP/BLAS threads in every server under test (default 1, which is fair to the "
             "baseline; 0 leaves the libraries' defaults: on 2 cores a minimal endpoint's "
             "HistGradientBoosting then spends 10-100x longer per single row in OpenMP)")
    parser.add_argument("--quick", action="store_true",
                        help="short cells, 200 tenants, a smaller model: under 90 s")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy --gil (where the interpreter's time goes) the server in "
                             "the 1-row modelyard cells and the tenants cell; raw stacks here")
    parser.add_argument("--replicas", action="store_true",
                        help="also serve through 2 `modelyard serve` replicas behind HAProxy "
                             "(Debian's haproxy), and restart one of them under load")
    parser.add_argument(
        "--open", type=open_cells, default=open_cells("1x1000,1x1500,100x400"),
        metavar="ROWSxRATE,...",
        help="open-loop cells after the closed ones: requests of ROWS (1 or 100) sent at RATE a "
             "second over 16 connections, each latency counted from its planned send (what a "
             "user sees at that load; '' for none)")
    parser.add_argument("--home", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = min(args.duration, 1.5), min(args.warmup, 0.5)
        args.tenant_duration = min(args.tenant_duration, 3.0)
        args.tenants, args.rows, args.max_iter = min(args.tenants, 200), 20_000, 50
    tmp = None
    if args.home is None:
        tmp = tempfile.TemporaryDirectory(prefix="modelyard-serving-bench-")
        args.home = Path(tmp.name)
    gen = LoadGen()
    try:
        run(args.home.resolve(), args, gen)
    except Exception as exc:  # a benchmark reports; it never fails the caller
        import traceback

        traceback.print_exc()
        print(f"\nbenchmark aborted: {type(exc).__name__}: {exc}")
    finally:
        gen.close()
        if tmp is not None:
            tmp.cleanup()
    return 0


def open_cells(text: str) -> list[tuple[int, float]]:
    """``ROWSxRATE,...`` as (rows, requests a second) pairs; rows is 1 or 100."""
    out = []
    for cell in filter(None, text.split(",")):
        rows, _, rate = cell.partition("x")
        if rows not in ("1", "100") or not rate.replace(".", "", 1).isdigit() or not float(rate):
            raise argparse.ArgumentTypeError(f"--open {cell!r}: write ROWSxRATE, ROWS 1 or 100")
        out.append((int(rows), float(rate)))
    return out


def run(home: Path, args: argparse.Namespace, gen: LoadGen) -> None:
    from modelyard.client import Client
    from modelyard.server import free_port
    from modelyard.synthetic import write_payments

    t_start = time.perf_counter()
    data = home / "data" / "payments.parquet"
    write_payments(data, rows=args.rows, merchants=1_000)
    print(f"modelyard serving benchmark: {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    threads = args.threads if args.threads > 0 else "library default"
    print(f"OpenMP/BLAS threads in the servers: {threads}")
    print(f"cells: {args.warmup:g} s warm-up + {args.duration:g} s measured, closed loop (open "
          "at a rate in the \"at N/s\" cells) over "
          "loopback; srv cpu, cli cpu, others = % of one core used by the server (with its "
          "child processes, e.g. the shadow scorer), the load "
          "generator, and every other process on the machine (cells with others above ~20% are "
          "disturbed); ms/req = server CPU per request")

    results: dict[tuple[str, int, int], Result] = {}
    one = sample_rows(data, 512, 1, seed=1)
    hundred = sample_rows(data, 32, 100, seed=2)
    env = thread_env(args.threads)
    server = modelyard_server(home, free_port(), env)
    try:
        server.start()
        with Client(server.url, timeout=60) as client:
            t0 = time.perf_counter()
            versions = train_versions(client, args)
        v1 = versions[0]
        print(f"trained {len(versions)} versions of {MODEL_NAME!r} (HistGradientBoosting, "
              f"max_iter {args.max_iter}, {args.rows:,} rows) in {time.perf_counter() - t0:.1f} s;"
              f" v1 is {blob_path(home, v1['model_id']).stat().st_size / 1e3:.0f} kB pickled")
        my = Target(server, f"/predict/{MODEL_NAME.replace(' ', '%20')}", "scores")

        def cells(target: Target, label: str, combos: list[tuple[list[Any], int]]) -> None:
            prime(target, [one[0], hundred[0]])
            for samples, clients in combos:
                prof = None
                if args.profile and label.startswith("modelyard") and len(samples[0]) == 1:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    slug = label.replace("+", "-").replace(" ", "")
                    prof = str(args.profile / f"{slug}-1row-{clients}clients.txt")
                results[(label, len(samples[0]), clients)] = run_cell(
                    gen, target, label, samples, clients, args, profile=prof)

        grid = [(one, 1), (one, 16), (hundred, 1), (hundred, 16)]
        print(f"\n  {HEADER}")
        cells(my, "modelyard", grid)
        for rows, rate in args.open:
            label = f"modelyard at {rate:g}/s"
            results[(label, rows, 16)] = run_cell(
                gen, my, label, one if rows == 1 else hundred, 16, args, rate=rate)

        baseline = baseline_server(home, free_port(), blob_path(home, v1["model_id"]), env)
        try:
            baseline.start()
            cells(Target(baseline, "/predict", "scores"), "baseline", grid)
        finally:
            baseline.stop()

        if importlib.util.find_spec("mlflow") is None:
            print(f"  {'mlflow models serve':<36}skipped (mlflow not installed)")
        else:
            import pickle

            model = pickle.loads(blob_path(home, v1["model_id"]).read_bytes())  # noqa: S301
            mlf = mlflow_server(home, free_port(), model, env)
            try:
                mlf.start(timeout=180)
                cells(Target(mlf, "/invocations", "predictions", wrap="dataframe_records"),
                      "mlflow", grid)
            except Exception as exc:
                print(f"  mlflow models serve failed: {type(exc).__name__}: {exc}")
            finally:
                mlf.stop()

        # The same three versions under a second name, whose v2 and v3 shadow v1. Plain and
        # shadowed cells alternate, round after round, so that drift in a shared machine's
        # speed hits both alike; the cost is computed from the medians.
        with Client(server.url, timeout=60) as client:
            shadowed = train_versions(client, args, SHADOWED_NAME)
            for v in shadowed[1:]:
                client.set_stage(SHADOWED_NAME, v["version"], "shadow", actor=ACTOR,
                                 reason="serving benchmark")
        if not wait_for_shadows(server, SHADOWED_NAME, one[0], 2):
            print("  (the two shadows were not seen scoring within 30 s)")
        mine = Target(server, f"/predict/{SHADOWED_NAME.replace(' ', '%20')}", "scores")
        prime(mine, [one[0], hundred[0]])
        for round_ in range(args.shadow_rounds):
            for samples in (one, hundred):
                for target, label in ((my, "modelyard"), (mine, "modelyard+2 shadows")):
                    key = (f"{label} #{round_ + 1}", len(samples[0]), 16)
                    results[key] = run_cell(gen, target, key[0], samples, 16, args)
        time.sleep(1.5)  # let the shadow backlog drain before reading the stats
        st = stats(server)
        print(f"  shadows after the cells: rows scored {st['shadow_rows']:,}, queued "
              f"{st['shadow_queue']}, dropped (queue full) {st['shadow_dropped']}, lost "
              f"{st['shadow_lost']}, errors "
              f"{st['shadow_errors']}")
    finally:
        server.stop()

    if args.replicas:
        from _replicas import run_replicas

        replica_report = run_replicas(home, args, gen, env, {1: one, 100: hundred})
    tenant_report: list[str] = []
    if args.tenants > 0:
        tenant_report = run_tenants(home, args, gen, v1)
    report(results, (replica_report if args.replicas else []) + tenant_report)
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")


def run_tenants(home: Path, args: argparse.Namespace, gen: LoadGen, v1: dict[str, Any]
                ) -> list[str]:
    from modelyard.server import free_port

    ids, total, fit_s = make_tenant_models(home, home / "data" / "payments.parquet",
                                           args.tenants)
    budget = int(total * BUDGET_FRACTION)
    print(f"\n{len(ids):,} tenant models (the sklearn workflow, {TENANT_PARAMS}, "
          f"{total / len(ids) / 1e3:.1f} kB pickled on average, {total / 1e6:.1f} MB in all) "
          f"made in {fit_s:.1f} s; serving memory budget {budget / 1e6:.2f} MB "
          f"({BUDGET_FRACTION:.0%} of them)")
    server = modelyard_server(home, free_port(), {**thread_env(args.threads),
                                                  "MODELYARD_SERVING_MEMORY": str(budget)})
    try:
        server.start()
        tenants, reg_s = register_tenants(home, ids, v1["job_id"], v1["model"])
        t0 = time.perf_counter()
        while stats(server)["routes"] < len(tenants) and time.perf_counter() - t0 < 60:
            time.sleep(0.1)
        routes = stats(server)["routes"]
        print(f"registered and approved {len(tenants):,} tenant versions in {reg_s:.1f} s; the "
              f"router served {routes:,} routes {time.perf_counter() - t0:.1f} s later")
        samples = sample_rows(home / "data" / "payments.parquet", 4096, 1, seed=3)
        rng = random.Random(4)
        picks = [rng.choice(tenants) for _ in samples]  # uniform: the worst case for a cache
        target = Target(server, f"/predict/{TENANT_MODEL.replace(' ', '%20')}", "scores")
        prime(target, [samples[0]], tenants[:1])  # code paths warm: growth from here on is models
        rss0 = server.rss_mb()
        peak = {"bytes": 0, "models": 0, "rss": rss0}

        def poll() -> None:
            st = stats(server)
            peak["bytes"] = max(peak["bytes"], st["loaded_bytes"])
            peak["models"] = max(peak["models"], st["models_loaded"])
            peak["rss"] = max(peak["rss"], server.rss_mb())
        print(f"  {HEADER}")
        prof = None
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            prof = str(args.profile / "tenants-1row-16clients.txt")
        result = run_cell(gen, target, "tenants", samples, 16, args, tenants=picks,
                          on_poll=poll, profile=prof, duration=args.tenant_duration)
        poll()
        st = stats(server)
        rss1 = server.rss_mb()
    finally:
        server.stop()
    within = peak["bytes"] <= st["memory_budget_bytes"]
    answered = result.errors == 0 and result.rps > 0 and result.note in ("", "(profiled)")
    ok = within and answered and st["evictions"] > 0  # else the budget was never put to the test
    budget_mb = st["memory_budget_bytes"] / 2**20
    growth = peak["rss"] - rss0
    resident_ok = growth <= 2 * budget_mb
    return [
        f"{len(tenants):,} tenants, single rows for uniformly random tenants, 16 clients: "
        f"{result.rps:.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
        f"{result.errors} errors",
        f"  models_loaded {st['models_loaded']} (peak {peak['models']}), loaded_bytes "
        f"{st['loaded_bytes'] / 1e6:.2f} MB (peak polled {peak['bytes'] / 1e6:.2f} MB) of budget "
        f"{st['memory_budget_bytes'] / 1e6:.2f} MB, loads {st['loads']:,}, evictions "
        f"{st['evictions']:,}",
        f"  server accounting within the budget (and evicting), every request answered: "
        f"{verdict(ok)}",
        f"  resident memory: server RSS {rss0:.0f} -> peak {peak['rss']:.0f} -> end {rss1:.0f} "
        f"MiB, growth {growth:.0f} MiB = {growth / max(budget_mb, 1e-9):.1f}x the budget "
        f"({growth * 1024 / max(st['loads'], 1):.0f} KiB per load; target growth <= 2x the "
        f"budget, the rest being allocator slack): {verdict(resident_ok)}",
    ]


def report(results: dict[tuple[str, int, int], Result], tenant_report: list[str]) -> None:
    def get(label: str, rows: int, clients: int) -> Result | None:
        return results.get((label, rows, clients))

    print("\ntargets (reference, issue, 2 cores: mlflow ~180 req/s p99 171 ms; minimal FastAPI "
          "~920 req/s p99 20 ms; single rows, 16 clients)")
    single = get("modelyard", 1, 1)
    if single:
        print(f"  single row, 1 client: p50 {single.p50_ms:.2f} ms (target <= "
              f"{P50_TARGET_MS:g} ms)  {verdict(single.p50_ms <= P50_TARGET_MS)}")
    for rows in (1, 100):
        mine, base = get("modelyard", rows, 16), get("baseline", rows, 16)
        if mine and base and base.rps:
            ratio = mine.rps / base.rps
            if rows == 1:
                ok = ratio >= SPEEDUP_TARGET and mine.p99_ms <= P99_TARGET_MS
                print(f"  single row, 16 clients: {mine.rps:.0f} vs baseline {base.rps:.0f} "
                      f"req/s = {ratio:.2f}x (target >= {SPEEDUP_TARGET:g}x), p99 "
                      f"{mine.p99_ms:.1f} ms (target <= {P99_TARGET_MS:g} ms)  {verdict(ok)}")
            else:
                print(f"  100 rows, 16 clients (no target): {mine.rows_s:.0f} vs baseline "
                      f"{base.rows_s:.0f} rows/s = {ratio:.2f}x, p99 {mine.p99_ms:.1f} vs "
                      f"{base.p99_ms:.1f} ms")
    for rows in (1, 100):
        def rounds(label: str, rows: int = rows) -> list[float]:
            return [r.rps for (lab, n, _), r in results.items()
                    if lab.startswith(f"{label} #") and n == rows]

        plain, shadow = rounds("modelyard"), rounds("modelyard+2 shadows")
        if plain and shadow:
            # Each round's pair ran back to back: the median of the pairs' costs is robust to
            # a shared machine drifting between rounds.
            costs = [1 - s / p for p, s in zip(plain, shadow, strict=False) if p]
            cost = statistics.median(costs)
            print(f"  2 shadows, {rows} row{'s' if rows > 1 else ''}, 16 clients: "
                  f"{statistics.median(shadow):.0f} vs {statistics.median(plain):.0f} req/s "
                  f"(medians); cost per round {', '.join(f'{c:.1%}' for c in costs)}: median "
                  f"{cost:.1%} (target <= {SHADOW_COST_TARGET:.0%})  "
                  f"{verdict(cost <= SHADOW_COST_TARGET)}")
    for line in tenant_report:
        print(f"  {line}")
    bad = [r for r in results.values() if r.errors or (r.note and r.note != "(profiled)")]
    if bad:
        print("  cells with errors or failed answer checks: "
              + "; ".join(f"{r.label} {r.rows}x{r.clients}: {r.note or r.errors}" for r in bad))
    noisy = [r for r in results.values() if r.other_cpu > 0.2]
    if noisy:
        print(f"  {len(noisy)} cells shared the CPU with other processes (others > 20% of a core):"
              " " + ", ".join(f"{r.label} {r.rows}x{r.clients} {r.other_cpu:.0%}" for r in noisy))
    profiled = [r for r in results.values() if r.note.endswith("(profiled)")]
    if profiled:
        print("  (cells marked 'profiled' ran under py-spy: their numbers are perturbed)")


if __name__ == "__main__":
    sys.exit(main())
