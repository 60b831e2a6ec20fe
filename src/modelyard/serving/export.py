"""Export a registered version as a self-contained folder that scores without Modelyard.

::

    model.pkl              the model bytes, exactly as registered (their sha256 is the model id)
    model.json             id, version, stage, features (with their training data types),
                           label, task, workflow class and its code snapshot, holdout metrics
    request.json           the train request that produced it
    workflow_snapshot.py   the workflow module's code when it trained (a source snapshot)
    vendor/modelyard/      the few Modelyard modules scoring needs (see VENDORED)
    requirements.txt       the distributions the pickle references, pinned to the server's
                           versions, and the workflow's own distribution if installed
    predict.py             :mod:`modelyard.runtime.exported`, copied: load() verifies the
                           hashes; predict(frame) scores rows with the workflow's predict
    README.md              how to use it

Scores are the workflow's own ``predict``, from its snapshot, exactly as serving computes
them. Requirements are read from the pickle itself (every module it references), so the list
is what loading really needs; Modelyard is not among them, its pieces are vendored.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.resources
import io
import json
import pickletools
import sys
import tarfile
from pathlib import Path
from typing import Any

from modelyard._version import __version__
from modelyard.artifacts import ArtifactStore
from modelyard.registry.tables import VersionRow
from modelyard.runtime import exported

# The Modelyard modules an export carries under vendor/modelyard/ (the workflow contract, the
# built-in workflows and their encoders, which pickles reference), and the two package
# __init__ files written in their place: the real ones import the whole package.
VENDORED = ("_version.py", "errors.py", "runtime/workflow.py", "runtime/encoders.py",
            "runtime/builtin.py")
VENDORED_INIT = (
    '"""The pieces of Modelyard {version} that this export needs to score (the Workflow '
    'contract, the built-in workflows and their encoders); used only where Modelyard is not '
    'installed."""\n\nfrom modelyard._version import __version__\n'
    "from modelyard.runtime.workflow import Workflow\n\n"
    '__all__ = ["Workflow", "__version__"]\n')


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
    """The export folder's files for ``version`` (model and snapshot verified on the way)."""
    data = store.get_bytes(version.model_id)
    provenance: dict[str, Any] = {}
    if version.job_id:
        provenance = store.read_job_json(version.job_id, "provenance.json")
    request = provenance.get("request", {})
    schema = provenance.get("data", {}).get("schema", {})
    snapshot = provenance.get("workflow", {}).get("snapshot")
    features = version.model_meta.get("features", [])
    meta = {
        "model_name": version.model_name, "tenant": version.tenant, "version": version.version,
        "stage": version.stage, "model_id": version.model_id, "job_id": version.job_id,
        **version.model_meta, "metrics": version.metrics,
        # Arrow type names in the training data; the MLflow signature is built from them.
        "feature_types": {name: schema[name] for name in features if name in schema},
        "workflow_snapshot": snapshot,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "exported_by": f"modelyard {__version__}",
    }
    files = {
        "model.pkl": data,
        "model.json": json.dumps(meta, indent=2, default=str).encode(),
        "request.json": json.dumps(request, indent=2).encode(),
        "requirements.txt": _requirements(data, snapshot),
        "predict.py": Path(exported.__file__).read_bytes(),
        "README.md": _readme(version, meta).encode(),
        **vendored(),
    }
    if snapshot and snapshot.get("kind") == "source":
        files[exported.SNAPSHOT_FILE] = store.get_bytes(snapshot["object_id"])
    return files


def vendored() -> dict[str, bytes]:
    """``vendor/modelyard/...``: the Modelyard modules an export carries (:data:`VENDORED`)."""
    package = importlib.resources.files("modelyard")
    files = {f"vendor/modelyard/{name}": package.joinpath(name).read_bytes() for name in VENDORED}
    files["vendor/modelyard/__init__.py"] = VENDORED_INIT.format(version=__version__).encode()
    files["vendor/modelyard/runtime/__init__.py"] = b'"""Vendored: see modelyard/__init__.py."""\n'
    return files


def _requirements(data: bytes, snapshot: dict[str, Any] | None) -> bytes:
    requirements = [r for r in pickle_requirements(data) if not r.startswith("modelyard==")]
    if snapshot and snapshot.get("distribution") not in (None, "modelyard"):
        requirements.append(f"{snapshot['distribution']}=={snapshot['version']}")
    requirements += ["numpy", "pandas"]
    return ("\n".join(dict.fromkeys(requirements)) + "\n").encode()


def _readme(version: VersionRow, meta: dict[str, Any]) -> str:
    return (
        f"# {version.model_name} v{version.version} ({version.tenant})\n\n"
        f"Exported from Modelyard {__version__}. Model id `{version.model_id}`.\n\n"
        "```bash\npip install -r requirements.txt\npython predict.py rows.parquet\n```\n\n"
        "```python\nimport predict\nscores = predict.predict(frame)  # frame has the features "
        "in model.json\n```\n\n"
        f"Features: {', '.join(meta.get('features', []))}. Label: {meta.get('label')}. "
        f"Task: {meta.get('task')}.\n"
        "predict.py scores with the workflow's own predict(), from the code it was trained with "
        "(workflow_snapshot.py, or its installed distribution), exactly as the server does. "
        "Modelyard need not be installed: vendor/ holds the pieces it needs, used only when "
        "Modelyard is missing.\n"
    )


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
