"""An exported version as an MLflow pyfunc model (the optional ``modelyard[mlflow]`` extra).

:func:`save_mlflow_model` turns the folder that :mod:`modelyard.serving.export` writes into an
MLflow model folder::

    MLmodel                     the python_function flavour, the input signature
    data/export/                the folder export, whole: model.pkl (the bytes as registered),
                                model.json, request.json, workflow_snapshot.py, vendor/modelyard/
    code/modelyard_pyfunc.py    the folder's predict.py (:mod:`modelyard.runtime.exported`)
    requirements.txt            the export's requirements (plus mlflow, which MLflow adds)

The conversion runs where :meth:`modelyard.Client.export` runs, not in the server: the server
keeps a single export (the folder, which needs nothing extra), mlflow and its dependencies are
installed only by those who want this format, and the model records the MLflow and Python
versions of the user's environment rather than the server's.

The model is a *custom flavour* (``loader_module`` plus ``data_path``), not a pickled
``PythonModel`` instance: a pickled instance is pickled by reference to its class, so loading it
would need ``modelyard`` installed, while the loader module travels inside the model and needs
only the standard library, what ``model.pkl`` references and the export's vendored pieces.
Only the loader module goes on ``sys.path`` (as MLflow's ``code_paths``); the workflow snapshot
and the vendored ``modelyard`` stay in the data folder, and the vendored package is put on the
import path, at its end, only where no Modelyard is installed, so it never shadows one.

Scores are the workflow's own ``predict`` from its code snapshot, as the server's ``/predict``
and the folder's ``predict.py`` compute them. Loading refuses a ``model.pkl`` whose sha256 is
not the model id.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

LOADER_MODULE = "modelyard_pyfunc"


# Arrow type names (as the training job recorded them) -> MLflow column types. Integers are
# declared long: int32 or int64 input passes, but MLflow's schema check refuses a float column
# (which is what pandas makes of an integer feature with missing values).
_ARROW_TO_MLFLOW = {
    **{t: "long" for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")},
    "halffloat": "double", "float": "double", "double": "double",
    "string": "string", "large_string": "string", "bool": "boolean",
    "binary": "binary", "large_binary": "binary",
}


def import_mlflow() -> Any:
    """``mlflow.pyfunc``, or a ConfigurationError that says how to install it."""
    import warnings

    from modelyard.errors import ConfigurationError

    try:
        with warnings.catch_warnings():
            # mlflow >= 3 warns about its own type hints while importing mlflow.pyfunc.
            warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
            import mlflow.models
            import mlflow.pyfunc
    except ImportError:
        raise ConfigurationError(
            "exporting in MLflow format needs mlflow: pip install 'modelyard[mlflow]' "
            "(or export the plain folder, which needs nothing extra)"
        ) from None
    return mlflow


def mlflow_type(arrow_type: str | None) -> str | None:
    """The MLflow column type for an Arrow type name; None when there is no faithful one."""
    if arrow_type is None:
        return None
    if arrow_type.startswith("timestamp[") or arrow_type.startswith("date"):
        return "datetime"
    if arrow_type.startswith("dictionary<values=string"):
        return "string"
    return _ARROW_TO_MLFLOW.get(arrow_type)


def signature(meta: dict[str, Any]) -> Any:
    """The input signature: every feature by name, typed as it was in the training data.

    A feature whose type is unknown (a version exported before types were recorded, or a type
    with no MLflow counterpart) is declared ``any``, so MLflow passes it through unchecked.
    """
    mlflow = import_mlflow()
    schema = mlflow.types.schema
    types = meta.get("feature_types", {})
    columns = [schema.ColSpec(type=mlflow_type(types.get(name)) or schema.AnyType(), name=name)
               for name in meta["features"]]
    return mlflow.models.ModelSignature(inputs=schema.Schema(columns))


def save_mlflow_model(folder: str | Path, dest: str | Path) -> Path:
    """Write the export in ``folder`` as an MLflow pyfunc model at ``dest``.

    Args:
        folder: a folder export (``model.pkl``, ``model.json``, ``requirements.txt``, ...).
        dest: where the MLflow model goes; must not exist or be empty. It appears whole or not
            at all (written beside it, then renamed).

    Returns:
        ``dest``.

    Raises:
        ConfigurationError: mlflow is not installed.
        Conflict: ``dest`` exists and is not empty.
        ArtifactError: ``model.pkl`` does not hash to the model id in ``model.json``.
    """
    import shutil
    import tempfile
    import warnings

    from modelyard.errors import ArtifactError, Conflict

    mlflow = import_mlflow()
    folder, dest = Path(folder), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise Conflict(f"{dest} already exists and is not empty; choose another destination "
                       "or remove it")
    meta = json.loads((folder / "model.json").read_text())
    digest = "sha256:" + hashlib.sha256((folder / "model.pkl").read_bytes()).hexdigest()
    if digest != meta["model_id"]:
        raise ArtifactError(f"{folder / 'model.pkl'} hashes to {digest}, not "
                            f"{meta['model_id']}: it was altered; export the version again")
    if "def _load_pyfunc(" not in (folder / "predict.py").read_text():
        raise ArtifactError(f"{folder} was exported by a Modelyard server older than this "
                            "client; upgrade the server, or export the plain folder")
    requirements = [line.strip() for line in (folder / "requirements.txt").read_text().splitlines()
                    if line.strip()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
        staged = Path(tmp) / "export"
        shutil.copytree(folder, staged)
        loader = Path(tmp) / f"{LOADER_MODULE}.py"
        shutil.copyfile(folder / "predict.py", loader)
        out = Path(tmp) / "model"
        with warnings.catch_warnings():
            # An export carries no data rows, so there is no input example to give; the
            # signature comes from the training data's types instead.
            warnings.filterwarnings("ignore", message=".*input example was not provided",
                                    category=UserWarning)
            mlflow.pyfunc.save_model(
                str(out), loader_module=LOADER_MODULE, data_path=str(staged),
                code_paths=[str(loader)], pip_requirements=requirements,
                signature=signature(meta),
                metadata={"modelyard_model_id": meta["model_id"],
                          "modelyard_model_name": meta.get("model_name"),
                          "modelyard_version": meta.get("version"),
                          "modelyard_tenant": meta.get("tenant")},
            )
        if dest.exists():
            dest.rmdir()  # empty, checked above
        out.rename(dest)
    return dest
