"""Export a registered version as a self-contained folder that loads without a Modelyard server.

::

    model.pkl          the model bytes, exactly as registered (their sha256 is the model id)
    model.json         id, version, stage, features (with their training data types), label,
                       task, workflow, holdout metrics
    request.json       the train request that produced it
    requirements.txt   the distributions the pickle references, pinned to the training versions
    predict.py         load() verifies the hash and unpickles; predict(frame) scores rows
    README.md          how to use it

Requirements are read from the pickle itself (every module it references), so the list is what
loading really needs — including ``modelyard`` when a built-in workflow's encoder is inside.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import io
import json
import pickletools
import sys
import tarfile
from typing import Any

from modelyard._version import __version__
from modelyard.artifacts import ArtifactStore
from modelyard.registry.tables import VersionRow

PREDICT_PY = '''"""Load and score this exported Modelyard model; needs only requirements.txt."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def load():
    """The model and its metadata; refuses bytes that do not match the registered id."""
    meta = json.loads((HERE / "model.json").read_text())
    data = (HERE / "model.pkl").read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest != meta["model_id"]:
        raise ValueError(f"model.pkl hashes to {digest}, not {meta['model_id']}: it was altered")
    return pickle.loads(data), meta


def predict(frame):
    """One score per row: the positive class probability for binary models, else predict()."""
    model, meta = load()
    x = frame[meta["features"]]
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(x)
        return proba[:, 1] if proba.shape[1] == 2 else proba
    return model.predict(x)


if __name__ == "__main__":  # python predict.py rows.parquet|rows.csv
    import pandas as pd

    path = sys.argv[1]
    rows = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    for score in predict(rows):
        print(score)
'''


def pickle_requirements(data: bytes) -> list[str]:
    """``name==version`` of every installed distribution whose modules the pickle references."""
    modules: set[str] = set()
    last_strings: list[str] = []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
            modules.add(arg.split(" ")[0].split(".")[0])
        elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE") and isinstance(arg, str):
            last_strings = (last_strings + [arg])[-2:]
        elif opcode.name == "STACK_GLOBAL" and len(last_strings) == 2:
            modules.add(last_strings[0].split(".")[0])
    by_module = importlib.metadata.packages_distributions()
    out = set()
    for module in modules:
        if module in sys.stdlib_module_names or module == "builtins":
            continue
        for dist in by_module.get(module, []):
            out.add(f"{dist}=={importlib.metadata.version(dist)}")
    return sorted(out, key=str.lower)


def export_files(store: ArtifactStore, version: VersionRow) -> dict[str, bytes]:
    """The export folder's files for ``version`` (the model bytes verified on the way)."""
    data = store.get_bytes(version.model_id)
    provenance: dict[str, Any] = {}
    if version.job_id:
        provenance = store.read_job_json(version.job_id, "provenance.json")
    request = provenance.get("request", {})
    schema = provenance.get("data", {}).get("schema", {})
    features = version.model_meta.get("features", [])
    meta = {
        "model_name": version.model_name, "tenant": version.tenant, "version": version.version,
        "stage": version.stage, "model_id": version.model_id, "job_id": version.job_id,
        **version.model_meta, "metrics": version.metrics,
        # Arrow type names in the training data; the MLflow signature is built from them.
        "feature_types": {name: schema[name] for name in features if name in schema},
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "exported_by": f"modelyard {__version__}",
    }
    requirements = pickle_requirements(data) + ["pandas"]
    readme = (
        f"# {version.model_name} v{version.version} ({version.tenant})\n\n"
        f"Exported from Modelyard {__version__}. Model id `{version.model_id}`.\n\n"
        "```bash\npip install -r requirements.txt\npython predict.py rows.parquet\n```\n\n"
        "```python\nimport predict\nscores = predict.predict(frame)  # frame has the features "
        "in model.json\n```\n\n"
        f"Features: {', '.join(meta.get('features', []))}. Label: {meta.get('label')}. "
        f"Task: {meta.get('task')}.\n"
        "predict.py applies the default scoring (predict_proba's positive column, else predict); "
        "a workflow that overrides predict() needs the same override here.\n"
    )
    return {
        "model.pkl": data,
        "model.json": json.dumps(meta, indent=2, default=str).encode(),
        "request.json": json.dumps(request, indent=2).encode(),
        "requirements.txt": ("\n".join(dict.fromkeys(requirements)) + "\n").encode(),
        "predict.py": PREDICT_PY.encode(),
        "README.md": readme.encode(),
    }


def export_tarball(store: ArtifactStore, version: VersionRow) -> bytes:
    folder = f"{_safe(version.model_name)}-v{version.version}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in export_files(store, version).items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
