"""Both export formats score exactly as the server's ``/predict`` does, in a virtual
environment that has MLflow and the model's own libraries but nothing of Modelyard.

The environment is built once per session, offline: the packages that mlflow-skinny,
scikit-learn, pandas, numpy and pyarrow need, at the versions of requirements/dev.lock, from
uv's cache (which ``uv pip sync requirements/dev.lock`` in scripts/test.sh fills).
``uv pip sync`` installs exact pins without resolving, so it needs no index either.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelyard.client import Client
from tests.conftest import ServerProcess, with_workflow

LOCK = Path(__file__).parents[2] / "requirements" / "dev.lock"
CLEAN = ("mlflow-skinny", "scikit-learn", "pandas", "numpy", "pyarrow")
FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
SCORE_MLFLOW = (
    "import json, sys, mlflow.pyfunc, pandas as pd\n"
    "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
    "print(json.dumps([float(s) for s in m.predict(pd.read_parquet(sys.argv[2]))]))\n"
    "print(json.dumps(sys.modules['modelyard'].__file__))\n")


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    python3 = shutil.which("python3")  # where scripts/test.sh installs it
    if python3 and subprocess.run([python3, "-m", "uv", "--version"], capture_output=True,
                                  timeout=60).returncode == 0:
        return [python3, "-m", "uv"]
    pytest.skip("uv is not installed (scripts/test.sh installs it)")


def _pins(roots: tuple[str, ...]) -> list[str]:
    """``name==version`` from the lock for ``roots`` and everything they depend on."""
    pins = {canonicalize_name(m[1]): m[2]
            for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", LOCK.read_text(), re.M)}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    missing = sorted(seen - set(pins))
    assert not missing, f"{missing} are not pinned in {LOCK}"
    return [f"{name}=={pins[name]}" for name in sorted(seen)]


def _clean_env() -> dict[str, str]:
    """This process's environment without what would let Modelyard be imported."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@pytest.fixture(scope="session")
def clean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = _uv()
    root = tmp_path_factory.mktemp("clean-venv")
    (root / "requirements.txt").write_text("\n".join(_pins(CLEAN)) + "\n")
    venv = root / "venv"
    python = venv / "bin" / "python"
    for command in ([*uv, "venv", "-q", "--python", sys.executable, str(venv)],
                    [*uv, "pip", "sync", "-q", "--offline", "--python", str(python),
                     str(root / "requirements.txt")]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                              env=_clean_env())
        assert done.returncode == 0, f"{command}: {done.stderr}"
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print(u.find_spec('modelyard'), u.find_spec('mlflow') is not None)"],
                           capture_output=True, text=True, env=_clean_env(), timeout=60)
    assert probe.stdout.split() == ["None", "True"], probe.stderr
    return python


def _clean_run(python: Path, *args: str, cwd: Path) -> str:
    done = subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd,
                          env=_clean_env(), timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout


# The database plays no part in an export: SQLite alone keeps the suite within its time.
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize("workflow", ["sklearn", "Complement"])
def test_both_export_formats_score_as_the_server_does_without_modelyard(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any],
        clean_python: Path, tmp_path: Path, workflow: str) -> None:
    pytest.importorskip("mlflow")  # the MLflow conversion runs here, beside the client
    name = f"clean-{workflow.lower()}-{uuid.uuid4().hex[:8]}"
    request = {**fraud_request, "metadata": {**fraud_request["metadata"], "model_name": name}}
    if workflow != "sklearn":  # the built-in one keeps the demo's parameters
        request = with_workflow(request, workflow)
    client.wait(client.train(request), 180)
    client.approve(name, 1, user="kelley", comment="serve it")
    folder = client.export(name, 1, tmp_path / "folder")
    model = client.export(name, 1, tmp_path / "mlflow", format="mlflow")
    frame = pd.read_parquet(server.home / "data" / "payments.parquet").sample(30, random_state=9)
    frame[[*FEATURES, "has_fraud_dispute"]].to_parquet(tmp_path / "rows.parquet")
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in frame[FEATURES].to_dict("records")]
    answer = httpx.post(f"{server.url}/predict/{name}", json={"rows": rows}, timeout=30)
    assert answer.status_code == 200, answer.text
    served = np.array(answer.json()["scores"])
    if workflow == "Complement":  # the override, not the default positive-class probability
        assert served.mean() > 0.5
        assert (folder / "workflow_snapshot.py").is_file()

    by_folder = _clean_run(clean_python, str(folder / "predict.py"),
                           str(tmp_path / "rows.parquet"), cwd=tmp_path)
    np.testing.assert_allclose([float(x) for x in by_folder.split()], served, rtol=1e-9)
    scores, modelyard_file = (json.loads(line) for line in _clean_run(
        clean_python, "-c", SCORE_MLFLOW, str(model), str(tmp_path / "rows.parquet"),
        cwd=tmp_path).splitlines()[-2:])
    np.testing.assert_allclose(scores, served, rtol=1e-9)
    # The vendored pieces, from inside the MLflow model.
    assert Path(modelyard_file).is_relative_to(model / "data" / "export" / "vendor")
