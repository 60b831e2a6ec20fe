"""README.md is executed: its workflow, train request, Python snippets and quick start.

Every code block used here is taken from README.md itself, so an edit that breaks the README
breaks a test. The quick start's commands run as written, in a temporary folder, with the
``modelyard`` command of the interpreter running the tests; the only additions are a free port
(and ``MODELYARD_URL`` for the clients) and a sleeping workflow for ``jobs cancel`` to cancel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import yaml
from threadpoolctl import threadpool_limits

from modelyard import __version__
from modelyard.client import Client
from modelyard.server import free_port
from tests.conftest import WORKFLOWS, ServerProcess, start_server

README = Path(__file__).parent.parent / "README.md"
README_URL = "http://127.0.0.1:8765"  # the server address the README's examples use
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.M | re.S)


def readme_section(heading: str) -> str:
    """The text of the README's ``## heading`` section, up to the next ``## ``."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if match is None:
        raise LookupError(f"README.md has no '## {heading}' section")
    return match.group(1)


def readme_block(heading: str, lang: str, *, containing: str = "") -> str:
    """The one ``lang`` code block of section ``heading`` that contains ``containing``."""
    blocks = [
        m["body"] for m in FENCE.finditer(readme_section(heading))
        if m["lang"] == lang and containing in m["body"]
    ]
    if len(blocks) != 1:
        raise LookupError(
            f"README.md section '{heading}' has {len(blocks)} {lang} blocks containing "
            f"{containing!r}; expected exactly 1"
        )
    return blocks[0]


def shell_commands(block: str) -> list[str]:
    """The commands of a shell block as bash reads them: a line that ends with ``\\`` goes on
    on the next one, and so does an open quote; comment lines are left out."""
    commands, pending = [], ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # "No closing quotation": the quoted text goes on
            continue
        commands.append(pending)
        pending = ""
    if pending:
        raise ValueError(f"README shell block ends inside a command: {pending!r}")
    return commands


@dataclass
class Ran:
    """What a README command did: its exit status and what it printed."""

    command: str
    code: int
    stdout: str
    stderr: str


def run_modelyard(command: str, env: Mapping[str, str]) -> Ran:
    """Run a README ``modelyard ...`` command line in this process, through the CLI's own
    entry, its arguments split as bash splits them: the same parsing and code as the
    ``modelyard`` script without an interpreter's start per line. An error of the command
    exits 2 with its message, as ``modelyard.cli.main.main`` makes it."""
    from click.testing import CliRunner

    from modelyard.cli.main import cli
    from modelyard.errors import ModelyardError

    argv = shlex.split(command, comments=True)
    if argv[0] != "modelyard":
        raise ValueError(f"not a modelyard command: {command!r}")
    result = CliRunner().invoke(cli, argv[1:], env=dict(env))
    code, error = result.exit_code, ""
    if isinstance(result.exception, ModelyardError):
        code, error = 2, f"error: {result.exception}"
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(command, code, result.stdout, result.stderr + error)


def workflow_code() -> str:
    return readme_block("Quick start", "python", containing="# my_workflows.py")


def request_yaml() -> str:
    return readme_block("The train request", "yaml", containing="metadata:")


def quick_start_commands() -> list[str]:
    """The quick start's shell commands, one a line (comment-only lines left out)."""
    lines = readme_block("Quick start", "bash").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def write_readme_files(folder: Path) -> None:
    """Save the README's workflow and request as the quick start says: my_workflows.py and
    request.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_workflows.py").write_text(workflow_code())
    (folder / "request.yaml").write_text(request_yaml())


def import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_printing(code: str, namespace: dict[str, Any]) -> str:
    """Execute ``code`` in ``namespace``; return what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), namespace)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# the workflow and the request, through the real server


# The README's workflow, request and client snippet are the same on any job store (the train
# path runs on every backend in tests/api/test_train_api.py): SQLite alone.
@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server started, as the README says, with ``--workflows my_workflows.py``."""
    tmp = tmp_path_factory.mktemp("readme")
    write_readme_files(tmp / "project")
    proc = start_server(tmp, "sqlite", "--workflows", str(tmp / "project" / "my_workflows.py"))
    yield proc
    proc.stop()


def test_readme_python_client_trains_the_readme_workflow_on_the_readme_request(
    readme_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_readme_files(tmp_path)
    monkeypatch.chdir(tmp_path)  # the snippet reads "request.yaml" from the working directory
    code = readme_block("Quick start", "python", containing="Client(")
    assert README_URL in code
    namespace: dict[str, Any] = {}
    printed = run_printing(code.replace(README_URL, readme_server.url), namespace)

    answer = namespace["answer"]
    assert answer["status"]["transition"]["job_state"] == "succeeded"
    metrics = answer["result"]["metrics"]
    assert 0.55 < metrics["roc_auc"] <= 1.0, metrics  # the synthetic label is learnable
    assert {"pr_auc", "log_loss", "accuracy"} <= metrics.keys()
    roc_auc, model_id = printed.split()
    assert float(roc_auc) == pytest.approx(metrics["roc_auc"])
    assert model_id == answer["result"]["model_id"] and model_id.startswith("sha256:")
    with readme_server.client() as client:
        job = client.job(namespace["job_id"])
    steps = {step["name"]: step for step in job["status"]["steps"]}
    assert steps["resolve_workflow"]["info"]["cls"] == "my_workflows:StripeFraudModel"


def test_readme_workflow_passes_check_workflow(tmp_path: Path) -> None:
    write_readme_files(tmp_path)
    workflows = import_file(tmp_path / "my_workflows.py")
    code = readme_block("Quick start", "python", containing="check_workflow(")
    # One OpenMP thread (as in tests/test_testing.py): the checks fit in this process, where a
    # busy machine's spinning OpenMP threads slow a histogram gradient boosting fit many times.
    with threadpool_limits(limits=1):
        run_printing(code, {"StripeFraudModel": workflows.StripeFraudModel})


# --------------------------------------------------------------------------------------------
# the quick start, command by command


class QuickStart:
    """The quick start's shell, in ``folder``: the commands run in bash as written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        self.env = {
            **env,
            "HOME": str(folder / "user"),  # ~/.modelyard lands in the temporary folder
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "MODELYARD_URL": self.url,
            "COLUMNS": "200",  # rich wraps at 80 columns otherwise
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.job_id = ""

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", line], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=90)

    def start_server(self, line: str) -> None:
        # A free port instead of 8765; the test workflows give `jobs cancel` a job to cancel.
        line = line.replace("modelyard server", f"modelyard server --port {self.port} "
                            f"--workflows {shlex.quote(str(WORKFLOWS))}", 1)
        log = self.folder / "server.log"
        with open(log, "wb") as out:
            self.server = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=self.folder,
                                           env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError(f"`{line}` exited: {log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"`{line}` did not answer /healthz in 60 s: {log.read_text()}")

    def stop_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(timeout=10)


def ok(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Assert the command succeeded and printed each of ``expected``; return its output."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`{result.args[-1]}` exited {result.returncode}:\n{output}"
    for text in expected:
        assert text in output, f"`{result.args[-1]}` did not print {text!r}:\n{output}"
    return output


def synthetic_data(shell: QuickStart, line: str) -> None:
    ok(shell.run(line))
    assert pq.read_metadata(shell.folder / "data" / "payments.parquet").num_rows > 10_000


def install(shell: QuickStart, line: str) -> None:
    # The interpreter running the tests is that install: its `modelyard` comes first on PATH.
    ok(shell.run("modelyard --version"), __version__)


def train(shell: QuickStart, line: str) -> None:
    output = ok(shell.run(line), "succeeded", "roc_auc")
    match = re.search(r"submitted job ([0-9a-f]{32})", output)
    assert match is not None, output
    shell.job_id = match[1]
    with Client(shell.url) as client:
        result = client.result(shell.job_id)["result"]
    assert 0.55 < result["metrics"]["roc_auc"] <= 1.0, result["metrics"]


def jobs_list_failed(shell: QuickStart, line: str) -> None:
    output = ok(shell.run(line))
    assert shell.job_id[:8] not in output, "the succeeded job is listed among failed ones"


def jobs_show(shell: QuickStart, line: str) -> None:
    ok(shell.run(line.replace("JOB_ID", shell.job_id)), "succeeded", "roc_auc", "evaluate")


def jobs_logs(shell: QuickStart, line: str) -> None:
    ok(shell.run(line.replace("JOB_ID", shell.job_id)), "job succeeded")


def jobs_replay(shell: QuickStart, line: str) -> None:
    ok(shell.run(line.replace("JOB_ID", shell.job_id)), f"replaying job {shell.job_id}",
       "reproduced: the replay trained the same model")


def jobs_cancel(shell: QuickStart, line: str) -> None:
    request = yaml.safe_load((shell.folder / "request.yaml").read_text())
    request["train"] = {**request["train"], "workflow_name": "Sleeps",
                        "custom_params": {"seconds": 60}}
    with Client(shell.url) as client:
        sleeper = client.train(request)
        ok(shell.run(line.replace("JOB_ID", sleeper)))
        answer = client.wait(sleeper, timeout=30, raise_on_failure=False)
    assert answer["status"]["transition"]["job_state"] == "cancelled"


def validate(shell: QuickStart, line: str) -> None:
    ok(shell.run(line), "valid", "StripeFraudModel")


STEPS: dict[str, Callable[[QuickStart, str], None]] = {
    "pip install": install,
    "python -m modelyard.synthetic": synthetic_data,
    "modelyard server": QuickStart.start_server,
    "modelyard train": train,
    "modelyard jobs list --state failed": jobs_list_failed,
    "modelyard jobs show": jobs_show,
    "modelyard jobs logs": jobs_logs,
    "modelyard jobs replay": jobs_replay,
    "modelyard jobs cancel": jobs_cancel,
    "modelyard validate": validate,
}


def step_for(line: str) -> Callable[[QuickStart, str], None]:
    for prefix, step in STEPS.items():
        if line.startswith(prefix):
            return step
    raise AssertionError(f"README quick start command `{line}` has no check in {__file__}: "
                         "add one to STEPS")


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    commands = quick_start_commands()
    assert [step_for(line) for line in commands] == list(STEPS.values()), (
        "every quick-start step is checked, in the README's order")
    write_readme_files(tmp_path)
    shell = QuickStart(tmp_path)
    try:
        for line in commands:
            step_for(line)(shell, line)
    finally:
        shell.stop_server()
