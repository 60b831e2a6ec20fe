"""Load and score an exported Modelyard version, with nothing of Modelyard installed.

This file is copied, unchanged, into every export: as ``predict.py`` in the folder export and
as ``modelyard_pyfunc.py`` in an MLflow model (MLflow calls :func:`_load_pyfunc`). So it imports
only the standard library at module level, and Modelyard imports its two code-snapshot helpers
(:func:`import_snapshot`, :func:`unpickle`) from here, so a version loads the same way in the
server and in an export. An export folder holds::

    model.pkl              the model bytes; their sha256 is the model id (checked on load)
    model.json             features, task, the workflow class and its snapshot record
    request.json           the train request (the workflow's configuration)
    workflow_snapshot.py   the workflow module's code when it trained (a source snapshot)
    vendor/modelyard/      the few Modelyard modules a workflow and the built-in pipelines
                           need: the Workflow contract, the encoders, the built-in workflows

Scores are the workflow's own ``predict(model, frame)`` on the model's features, as serving
computes them. The vendored ``modelyard`` goes on the import path only when no Modelyard is
installed, and at its end, so it never shadows a real install (which then scores instead).
In an export, ``workflow.request`` is the request's JSON read by attribute
(``request.train.label``), not Modelyard's pydantic model.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import linecache
import pickle
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SNAPSHOT_FILE = "workflow_snapshot.py"
SNAPSHOT_PREFIX = "_modelyard_snapshot_"
_importing = threading.Lock()


def snapshot_module_name(object_id: str) -> str:
    """The private module name a source snapshot is imported under (from its sha256)."""
    return SNAPSHOT_PREFIX + object_id.partition(":")[2]


def import_snapshot(object_id: str, source: bytes, module: str) -> types.ModuleType:
    """The snapshot ``source`` of workflow module ``module`` as a private module, imported once
    per process and kept in ``sys.modules``; its relative imports resolve in ``module``'s
    package.

    Raises:
        ValueError: ``source`` does not hash to ``object_id``.
    """
    name = snapshot_module_name(object_id)
    with _importing:
        found = sys.modules.get(name)
        if found is not None:
            return found
        if "sha256:" + hashlib.sha256(source).hexdigest() != object_id:
            raise ValueError(f"workflow snapshot does not hash to {object_id}: it was altered")
        return run_snapshot(name, object_id, source, module)


def run_snapshot(name: str, object_id: str, source: bytes, module: str) -> types.ModuleType:
    """Run the snapshot ``source`` of workflow module ``module`` as the module ``name``, put in
    ``sys.modules`` (replacing any module of that name; put back if the snapshot fails); its
    relative imports resolve in ``module``'s package."""
    filename = f"<workflow snapshot of {module} {object_id}>"
    text = source.decode()
    # Tracebacks through the snapshot show its lines.
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    new = types.ModuleType(name)
    new.__file__ = filename
    new.__package__ = module.rpartition(".")[0]
    previous = sys.modules.get(name)
    sys.modules[name] = new  # before running it: classes and dataclasses look it up
    try:
        exec(compile(text, filename, "exec"), new.__dict__)  # noqa: S102 - the snapshot
    except BaseException:
        if previous is None:
            del sys.modules[name]
        else:
            sys.modules[name] = previous
        raise
    return new


def attribute(module: types.ModuleType, qualname: str) -> Any:
    """``module.A.B`` for the qualified name ``A.B``."""
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _Unpickler(pickle.Unpickler):
    """Resolves the classes of the snapshotted workflow module against its snapshot."""

    def __init__(self, data: bytes, snapshots: Mapping[str, types.ModuleType]) -> None:
        super().__init__(io.BytesIO(data))
        self._snapshots = snapshots

    def find_class(self, module: str, name: str) -> Any:
        snapshot = self._snapshots.get(module)
        if snapshot is not None:
            return attribute(snapshot, name)
        return super().find_class(module, name)


def unpickle(data: bytes, snapshots: Mapping[str, types.ModuleType]) -> Any:
    """Unpickle ``data``; a class of a module in ``snapshots`` (by its name when the model
    trained) comes from that module's snapshot, not from the module's file as it is now."""
    if not snapshots:
        return pickle.loads(data)  # noqa: S301 - the caller verified the bytes
    return _Unpickler(data, snapshots).load()


class RequestView(Mapping[str, Any]):
    """The train request's JSON, read by attribute (``request.train.label``) or by key."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(f"the request has no field {name!r}") from None
        return RequestView(value) if isinstance(value, Mapping) else value

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class Exported:
    """A loaded export: the model, its workflow (configured with its request), its metadata."""

    def __init__(self, model: Any, workflow: Any, meta: dict[str, Any]) -> None:
        self.model = model
        self.workflow = workflow
        self.meta = meta

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """One score per row of ``model_input`` (a DataFrame, or anything DataFrame() takes),
        as the workflow's ``predict`` scores the model's features."""
        import numpy as np
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(
            model_input)
        return np.asarray(self.workflow.predict(self.model, frame[self.meta["features"]]))


def load(folder: str | Path = HERE) -> Exported:
    """The export in ``folder``; refuses a model or snapshot that does not match its hash."""
    folder = Path(folder)
    meta = json.loads((folder / "model.json").read_text())
    data = (folder / "model.pkl").read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest != meta["model_id"]:
        raise ValueError(f"model.pkl hashes to {digest}, not {meta['model_id']}: it was altered")
    vendor = str(folder / "vendor")
    if importlib.util.find_spec("modelyard") is None and vendor not in sys.path:
        sys.path.append(vendor)
    workflow_class, snapshots = _workflow_class(folder, meta)
    model = unpickle(data, snapshots)
    request = RequestView(json.loads((folder / "request.json").read_text()))
    return Exported(model, workflow_class(request), meta)


def _workflow_class(folder: Path, meta: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    snapshot = meta.get("workflow_snapshot")
    if snapshot is None:  # a version trained before snapshots: its class by name
        module_name, _, qualname = meta["workflow_class"].partition(":")
        return attribute(importlib.import_module(module_name), qualname), {}
    if snapshot["kind"] != "source":  # an installed distribution's (requirements.txt)
        return attribute(importlib.import_module(snapshot["module"]), snapshot["qualname"]), {}
    module = import_snapshot(snapshot["object_id"], (folder / SNAPSHOT_FILE).read_bytes(),
                             snapshot["module"])
    return attribute(module, snapshot["qualname"]), {snapshot["module"]: module}


@lru_cache(maxsize=1)
def _loaded() -> Exported:
    return load(HERE)


def predict(frame: Any) -> Any:
    """Scores of ``frame``'s rows by the export beside this file."""
    return _loaded().predict(frame)


def _load_pyfunc(data_path: str) -> Exported:
    """MLflow's entry point for a ``loader_module`` flavour."""
    return load(data_path)


if __name__ == "__main__":  # python predict.py rows.parquet|rows.csv
    import pandas as pd

    path = sys.argv[1]
    rows = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    for score in predict(rows):
        print(score)
