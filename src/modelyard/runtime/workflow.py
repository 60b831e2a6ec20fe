"""The workflow contract, and finding a workflow by name.

A user writes one class::

    class StripeFraudModel(Workflow):
        def train(self, train_df, holdout_df):
            return make_pipeline(...).fit(train_df[self.features], train_df[self.label])

and Modelyard does everything around it. A workflow holds configuration (the request), never data,
and has no logic in ``__init__``. ``predict(model, df)`` defaults to ``predict_proba``'s positive
column for binary classifiers, the probability matrix for multi-class ones, else ``predict``.

Workflows are found, in order, by dotted path ``package.module:Class`` (a ``--workflows`` file by
its stem, ``workflows:Class``), among the modules the server was started with
(``--workflows MODULE_OR_FILE``), and through the entry-point group ``modelyard.workflows``.

A request names code; only the operator decides which code may run. A dotted path is checked
before anything is imported (:func:`allowed_module`): it must name a ``--workflows`` module, a
package the operator allowed (``--workflow-package``), or Modelyard's own; never a file path.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from modelyard.errors import WorkflowError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelyard.request.models import TrainRequest

Task = Literal["binary", "multiclass", "regression"]
ENTRY_POINT_GROUP = "modelyard.workflows"
# Packages a dotted path may always name: the built-in workflows are Modelyard's own code.
ALWAYS_ALLOWED_PACKAGES = ("modelyard",)
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


class Workflow:
    """Base class of every workflow. Subclass it and implement :meth:`train`.

    Attributes:
        request: the whole validated train request.
        features: ``train.classifier_features``.
        label: ``train.label``.
        custom_params: ``train.custom_params``, untouched.
        name: the registered name (defaults to the class name).
        task: ``"binary"``, ``"multiclass"`` or ``"regression"`` to choose the metrics; ``None``
            lets Modelyard infer it from the label.
    """

    name: ClassVar[str | None] = None
    task: ClassVar[Task | None] = None

    def __init__(self, request: TrainRequest) -> None:
        self.request = request
        self.features: list[str] = list(request.train.classifier_features)
        self.label: str = request.train.label
        self.custom_params: dict[str, Any] = dict(request.train.custom_params)

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        """Fit and return a model. ``holdout_df`` is for early stopping or inspection only."""
        raise NotImplementedError(f"{type(self).__name__}.train(train_df, holdout_df) is missing")

    def predict(self, model: Any, df: pd.DataFrame) -> np.ndarray[Any, Any]:
        """Score rows: one score per row (or one row of class probabilities, for multi-class)."""
        import numpy as np

        # Serving builds frames with exactly these columns, and the built-in encoder picks its
        # own by name: either way, skip the copy a selection makes.
        x = df if list(df.columns) == self.features or selects_own_columns(model) else (
            df[self.features])
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(x))
            if proba.ndim == 2 and proba.shape[1] == 2:
                return proba[:, 1]
            return proba
        return np.asarray(model.predict(x))

    @classmethod
    def registered_name(cls) -> str:
        return cls.name or cls.__name__


def selects_own_columns(model: Any) -> bool:
    """Whether ``model`` is a pipeline whose first step reads its columns from a frame by name
    (declares ``selects_columns = True``), so it can be given the whole frame."""
    steps: Any = getattr(model, "steps", None)
    return bool(steps) and getattr(steps[0][1], "selects_columns", False) is True


def import_workflow_modules(modules: Sequence[str]) -> dict[str, type[Workflow]]:
    """Import each ``--workflows`` module (a module name or a ``.py`` file); index its workflows."""
    found: dict[str, type[Workflow]] = {}
    for spec in modules:
        module = _import_module_or_file(spec)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Workflow)
                and obj is not Workflow
                and obj.__module__ == module.__name__
            ):
                found[obj.registered_name()] = obj
    return found


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec


def _import_module_or_file(spec: str) -> Any:
    try:
        if _is_file(spec):
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise WorkflowError(f"workflow file {spec} does not exist")
            # Import under its own stem with its folder on sys.path, so models that reference its
            # classes unpickle wherever that folder is importable.
            folder = str(path.parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            if path.stem in sys.modules:
                del sys.modules[path.stem]
            return importlib.import_module(path.stem)
        return importlib.import_module(spec)
    except WorkflowError:
        raise
    except Exception as exc:
        raise WorkflowError(
            f"cannot import workflow module {spec}: {type(exc).__name__}: {exc}"
        ) from exc


@functools.cache
def entry_point_workflows() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed workflows by name (read once per process: installs need a server restart)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def resolve_workflow(name: str, modules: Sequence[str] = (),
                     packages: Sequence[str] = ()) -> type[Workflow]:
    """Find the workflow class called ``name``.

    ``modules`` are the server's ``--workflows`` modules and files, ``packages`` the packages a
    dotted path may name (``--workflow-package``).

    Raises:
        WorkflowError: it is not found (the message lists the known names), not allowed, or
            cannot be imported.
    """
    if ":" in name:
        module_name, _, attr = name.partition(":")
        module_path = allowed_module(name, modules, packages)
        for spec in modules:  # an allowed module beside a configured file is found too
            folder = str(Path(spec).expanduser().resolve().parent)
            if _is_file(spec) and folder not in sys.path:
                sys.path.insert(0, folder)
        module = _import_module_or_file(module_path)
        cls = getattr(module, attr, None)
        if cls is None:
            raise WorkflowError(
                f"workflow {name!r}: module {module_name} has no attribute {attr!r}"
            )
        return _check_class(cls, name)
    local = import_workflow_modules(modules)
    if name in local:
        return local[name]
    eps = entry_point_workflows()
    if name in eps:
        try:
            cls = eps[name].load()
        except ImportError as exc:
            raise WorkflowError(
                f"workflow {name!r} needs a package that is not installed ({exc}); "
                f"install it, e.g. pip install 'modelyard[{name}]'"
            ) from None
        return _check_class(cls, name)
    known = sorted(set(local) | set(eps))
    raise WorkflowError(
        f"unknown workflow {name!r} (known: {', '.join(known) or 'none'}); register it in the "
        f"entry-point group {ENTRY_POINT_GROUP}, start the server with --workflows MODULE_OR_FILE, "
        "or give a dotted path 'package.module:Class'"
    )


def allowed_module(name: str, modules: Sequence[str], packages: Sequence[str]) -> str:
    """What to import for the dotted path ``name`` (``module:Class``), if the operator allows it.

    A configured ``--workflows`` file answers to its stem or its file name (``workflows:Class``
    and ``workflows.py:Class`` both find ``/srv/flows/workflows.py``), a configured module to its
    name and its submodules. Any other module must be a dotted name inside an allowed package.
    Nothing is imported and nothing changes here: the API checks a request with it too.

    Raises:
        WorkflowError: ``name`` is not a dotted path, or names code the operator did not allow;
            the message says how to allow it.
    """
    module_name, _, attr = name.partition(":")
    files = [Path(spec).expanduser().resolve() for spec in modules if _is_file(spec)]
    for path in files:
        if module_name in (path.stem, path.name):
            return str(path)
    if not _DOTTED.match(module_name) or not attr.isidentifier():
        raise WorkflowError(
            f"workflow {name!r} is not a dotted path 'package.module:Class' (file paths are "
            "never imported from a request); name a registered workflow, or a class in a "
            "package the server allows"
        )
    allowed = [*ALWAYS_ALLOWED_PACKAGES, *packages,
               *(spec for spec in modules if not _is_file(spec))]
    if not any(module_name == p or module_name.startswith(p + ".") for p in allowed):
        raise WorkflowError(
            f"workflow {name!r} is not allowed: a dotted path may name only the server's "
            "--workflows modules and the packages it allows; the operator can allow this one "
            f"by starting the server with --workflow-package {module_name.split('.')[0]} "
            "(MODELYARD_WORKFLOW_PACKAGES), or register the class in the entry-point group "
            f"{ENTRY_POINT_GROUP}"
        )
    return module_name


def _check_class(cls: Any, name: str) -> type[Workflow]:
    if not (inspect.isclass(cls) and issubclass(cls, Workflow)):
        raise WorkflowError(f"workflow {name!r} is {cls!r}, not a subclass of modelyard.Workflow")
    return cls


def workflow_source(cls: type[Workflow]) -> dict[str, Any]:
    """Where the workflow's code came from: file, its sha256, and the git commit if in a repo."""
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    out: dict[str, Any] = {
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "source_file": path,
        "source_sha256": None,
        "git_commit": None,
        "git_dirty": None,
    }
    if not path or not os.path.isfile(path):
        return out
    with open(path, "rb") as fh:
        out["source_sha256"] = "sha256:" + hashlib.sha256(fh.read()).hexdigest()
    if cls.__module__.split(".")[0] != "modelyard":  # ours: the package version says it all
        out.update(_git_info(path))
    return out


def _git_info(path: str) -> dict[str, Any]:
    folder = os.path.dirname(path)
    # Skip git entirely for installed packages: they are never a working copy worth recording.
    if "site-packages" in folder or "dist-packages" in folder:
        return {}
    try:
        commit = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "--", path],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
