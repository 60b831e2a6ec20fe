"""Shared fixtures: synthetic data on disk and the real server in a subprocess.

The ``server`` fixture starts ``modelyard server`` for real (a subprocess on a free port) and
waits for ``/healthz``. It is parametrized over job-store backends: SQLite always, PostgreSQL
when ``MODELYARD_TEST_POSTGRES_URL`` points at a server (``.ci/run`` starts one; each server
fixture gets a fresh database in it).

Under ``CI=true`` nothing is skipped quietly: every optional extra the suite exercises must be
installed (``scripts/test.sh`` installs them from requirements/dev.lock), and a test that skips
anyway fails with its reason. A skip on a developer's machine (no PostgreSQL, no Ray) is fine;
in CI it would hide an executor or a workflow that nobody tested.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from modelyard.client import Client
from modelyard.server import free_port
from modelyard.synthetic import example_request, write_payments

TESTS = Path(__file__).parent
WORKFLOWS = TESTS / "workflows_for_api.py"
IN_CI = os.environ.get("CI", "").lower() == "true"
# Module -> the extra that brings it: each executor, built-in workflow and export the suite runs.
SUITE_NEEDS = {
    "ray": "ray", "kubernetes": "kubernetes", "kubernetes_validate": "dev",
    "lightgbm": "lightgbm", "xgboost": "xgboost", "torch": "torch", "mlflow": "mlflow",
    "psycopg": "postgres", "importlinter": "dev",
}


def pytest_sessionstart(session: pytest.Session) -> None:
    keep_bytecode_outside_the_trees()
    if not IN_CI:
        return
    missing = {m: extra for m, extra in SUITE_NEEDS.items()
               if importlib.util.find_spec(m) is None}
    if missing:
        raise pytest.UsageError(
            f"CI=true but the suite's extras are missing: {missing} (module: extra); install "
            "them with scripts/test.sh, which installs requirements/dev.lock")


def keep_bytecode_outside_the_trees() -> None:
    """Under ``PYTHONDONTWRITEBYTECODE``, keep bytecode in one cache folder instead of nowhere.

    Every server, fork server, worker and command the suite starts is a fresh interpreter that
    imports the whole stack (scikit-learn, pandas, SQLAlchemy, FastAPI). With the variable set
    and no bytecode installed (uv installs none), each of them would compile all of those
    modules from source again: most of a server's start on a busy machine. Bytecode written
    under ``PYTHONPYCACHEPREFIX`` (a folder of the temp dir unless one is set) leaves the
    source trees and the virtual environment as clean as the variable asks; the processes the
    suite starts inherit both settings, and this one keeps what it imports from now on.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    prefix = os.environ.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "modelyard-pycache"))
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    sys.pycache_prefix = prefix
    sys.dont_write_bytecode = False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped:  # a whole module skipped (pytest.skip at module level)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may skip: {report.longrepr}"
POSTGRES_URL = os.environ.get("MODELYARD_TEST_POSTGRES_URL")


@dataclass
class ServerProcess:
    """A ``modelyard server`` subprocess and what it was started with."""

    home: Path
    db_url: str
    port: int
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    cwd: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        with open(self.home / "server.log", "ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelyard", "server", "--port", str(self.port),
                 "--home", str(self.home), "--db", self.db_url, *self.args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                start_new_session=True, cwd=self.cwd,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.home / 'server.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {(self.home / 'server.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        """``kill -9`` the server process alone (its fork server and workers see it vanish)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> Client:
        return Client(self.url, timeout=30)


def fresh_db_url(backend: str, home: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{home / 'modelyard.db'}"
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("MODELYARD_TEST_POSTGRES_URL is not set in CI: .ci/run must start "
                        "PostgreSQL")
        pytest.skip("PostgreSQL not configured (set MODELYARD_TEST_POSTGRES_URL)")
    import psycopg

    name = f"modelyard_test_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


def make_home(root: Path) -> Path:
    home = root / "home"
    (home / "data").mkdir(parents=True)
    write_payments(home / "data" / "payments.parquet", rows=20_000, merchants=200)
    write_payments(home / "data" / "tiny.parquet", rows=2_000, merchants=20, seed=1)
    (home / "data" / "corrupt.parquet").write_text("charge_id,amount\n1,2\n")
    return home


def start_server(tmp: Path, backend: str, *extra: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> ServerProcess:
    home = make_home(tmp)
    server = ServerProcess(
        home=home,
        db_url=fresh_db_url(backend, home),
        port=free_port(),
        args=["--data-root", str(home / "data"), "--workflows", str(WORKFLOWS), *extra],
        env=env or {},
        cwd=cwd,
    )
    return server.start()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    """One real server per backend for the session, with 2 worker slots."""
    proc = start_server(tmp_path_factory.mktemp(f"server-{request.param}"), request.param,
                        "--concurrency", "2", "--job-memory-limit", str(6 * 2**30))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def token_env_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for the session with one shared token, ``MODELYARD_TOKEN=s3cret`` (a
    laptop's auth). Auth is the API's, whatever the job store: SQLite alone."""
    proc = start_server(tmp_path_factory.mktemp("token-env"), "sqlite",
                        env={"MODELYARD_TOKEN": "s3cret"})
    yield proc
    proc.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def fraud_request() -> dict[str, object]:
    """The demo's request on the 20k-row file, tagged with a project unique to the test."""
    req = example_request("payments.parquet")
    req["metadata"] = {**req["metadata"], "project": f"test-{uuid.uuid4().hex[:8]}"}  # type: ignore[dict-item]
    req["train"] = {**req["train"], "custom_params": {"max_iter": 30}}  # type: ignore[dict-item]
    return req


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def with_workflow(req: dict[str, object], name: str, **params: object) -> dict[str, object]:
    out = dict(req)
    out["train"] = {**req["train"], "workflow_name": name, "custom_params": params}  # type: ignore[dict-item]
    return out


class Scrape:
    """One scrape of a server's ``/metrics``, parsed as Prometheus parses it."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.samples = [s for family in text_string_to_metric_families(text)
                        for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` whose labels include ``labels``; 0 if there is none (a series
        not observed yet). Fails if several match."""
        found = [s.value for s in self.samples
                 if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) <= 1, f"{len(found)} samples {name}{labels}"
        return found[0] if found else 0.0


def scrape(url: str, token: str | None = None) -> Scrape:
    answer = httpx.get(f"{url}/metrics", timeout=30,
                       headers={"Authorization": f"Bearer {token}"} if token else None)
    answer.raise_for_status()
    return Scrape(answer.text)
