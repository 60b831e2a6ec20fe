"""Code snapshots: every version keeps the code of the workflow it was trained with.

At training the worker records, in ``provenance.json`` (``workflow.snapshot``), one of:

- ``source``: the workflow module's file, stored content-addressed in the artefact store (its
  object id is the sha256 of the bytes). A ``--workflows`` file, or a module of an allowed
  package that no installed distribution owns (a working copy).
- ``distribution``: the name and version of the installed distribution that owns the module:
  Modelyard's built-in workflows, an operator-installed package, an entry point. Its code is
  what that release installs, so the name and version say it all.

:func:`load_workflow` gives a version its workflow back. A source snapshot is imported as a
private module named after its sha256 (:func:`~modelyard.runtime.exported.import_snapshot`),
kept in ``sys.modules``: versions trained with different code coexist in one process, and a
version never sees later edits of the file. A distribution's workflow, and a version trained
before snapshots, resolve by name as at training (the installed code).

A pickled model may hold classes of the workflow module itself (a custom transformer in
``my_workflows.py``). Unpickling resolves those against the snapshot too, not against whatever
``my_workflows`` is today, so the model, its workflow class and ``predict`` all come from the
code that trained. Only the workflow's own module is snapshotted: classes of other modules (a
helper it imports, scikit-learn) and its relative imports resolve as they do today.

The operator's allow-list still decides what runs: a snapshot is code the operator allowed
when the version trained, stored by the worker itself and verified against its hash; what a
later request names is never imported from a snapshot.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import types
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from modelyard._version import __version__
from modelyard.artifacts import ArtifactStore, digest
from modelyard.errors import NotFound, WorkflowError
from modelyard.runtime.exported import (
    attribute,
    import_snapshot,
    run_snapshot,
    snapshot_module_name,
)
from modelyard.runtime.workflow import Workflow, resolve_workflow, workflow_source

log = logging.getLogger("modelyard.runtime")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Where a version's workflow code is kept (``provenance.json``'s ``workflow.snapshot``)."""

    kind: Literal["source", "distribution"]
    module: str  # the workflow class's module when it trained
    qualname: str
    object_id: str | None = None  # source: the module's bytes in the artefact store
    distribution: str | None = None  # distribution: its name and version
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Snapshot:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in fields})


def describe(cls: type[Workflow]) -> tuple[Snapshot, bytes | None] | None:
    """The snapshot of ``cls``'s code, and the module's source for a source snapshot; None when
    there is neither a source file nor a distribution (a class defined interactively)."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    owner = _distribution(cls.__module__, path)
    if owner is not None:
        return Snapshot("distribution", cls.__module__, cls.__qualname__,
                        distribution=owner[0], version=owner[1]), None
    if not path or not path.endswith(".py") or not os.path.isfile(path):
        return None
    source = Path(path).read_bytes()
    return Snapshot("source", cls.__module__, cls.__qualname__,
                    object_id=digest(source)), source


def take_snapshot(cls: type[Workflow], store: ArtifactStore) -> Snapshot | None:
    """Snapshot ``cls``'s code: a source snapshot's bytes go into the artefact store."""
    described = describe(cls)
    if described is None:
        return None
    snapshot, source = described
    if source is not None:
        store.put_bytes(source)
    return snapshot


def load_workflow(store: ArtifactStore, record: Mapping[str, Any] | None, name: str,
                  modules: Sequence[str] = (), packages: Sequence[str] = ()
                  ) -> tuple[type[Workflow], dict[str, types.ModuleType]]:
    """The workflow class of a version whose provenance holds the snapshot ``record`` (None
    before snapshots), and the modules its pickle's classes resolve against (for
    :func:`~modelyard.runtime.exported.unpickle`).

    Raises:
        NotFound: the snapshot's bytes are missing from the artefact store.
        WorkflowError: the snapshot cannot be imported, or the workflow resolved by ``name``
            can no longer be loaded from what the operator allows.
    """
    snapshot = Snapshot.from_json(record) if record else None
    if snapshot is None or snapshot.kind != "source" or snapshot.object_id is None:
        if snapshot is not None and snapshot.distribution:
            _check_version(snapshot)
        return resolve_workflow(name, modules, packages), {}
    module = sys.modules.get(snapshot_module_name(snapshot.object_id))
    try:
        if module is None:
            module = import_snapshot(snapshot.object_id, store.get_bytes(snapshot.object_id),
                                     snapshot.module)
    except NotFound:
        raise
    except Exception as exc:
        raise WorkflowError(
            f"cannot load the snapshot {snapshot.object_id} of workflow module "
            f"{snapshot.module}: {type(exc).__name__}: {exc}") from exc
    return _workflow_class(snapshot, module), {snapshot.module: module}


def _workflow_class(snapshot: Snapshot, module: types.ModuleType) -> type[Workflow]:
    """The snapshot's Workflow class in the module it ran as.

    Raises:
        WorkflowError: the module has no such class, or it is no Workflow.
    """
    try:
        cls = attribute(module, snapshot.qualname)
    except Exception as exc:
        raise WorkflowError(
            f"cannot load the snapshot {snapshot.object_id} of workflow module "
            f"{snapshot.module}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Workflow)):
        raise WorkflowError(f"snapshot {snapshot.object_id}: {snapshot.qualname} is {cls!r}, "
                            "not a subclass of modelyard.Workflow")
    return cls


def replay_workflow(store: ArtifactStore, record: Mapping[str, Any] | None, name: str,
                    modules: Sequence[str] = (), packages: Sequence[str] = ()
                    ) -> tuple[type[Workflow], dict[str, Any]]:
    """A replay's workflow: the code its original trained with, and the source record to keep.

    A source snapshot is run as the module it was when it trained (its name in
    ``sys.modules``, replacing the file as it is now in this worker, which runs this one job),
    so classes of the module pickle under their own names and a deterministic workflow gives
    the original's bytes. A distribution's workflow, or an original trained before snapshots,
    resolves by name: what is installed now (a replay says when its packages differ).

    Raises:
        NotFound: the snapshot's bytes are missing from the artefact store.
        WorkflowError: the snapshot cannot be run, or holds no such Workflow class.
    """
    snapshot = Snapshot.from_json(record) if record else None
    if snapshot is None or snapshot.kind != "source" or snapshot.object_id is None:
        cls = load_workflow(store, record, name, modules, packages)[0]
        taken = take_snapshot(cls, store)  # what ran: the installed release, recorded as such
        return cls, {**workflow_source(cls), "snapshot": taken.to_json() if taken else None}
    source = store.get_bytes(snapshot.object_id)  # verified against its sha256
    try:
        module = run_snapshot(snapshot.module, snapshot.object_id, source, snapshot.module)
    except Exception as exc:
        raise WorkflowError(f"cannot run the snapshot {snapshot.object_id} of workflow module "
                            f"{snapshot.module}: {type(exc).__name__}: {exc}") from exc
    cls = _workflow_class(snapshot, module)
    return cls, {"class": f"{snapshot.module}:{snapshot.qualname}",
                 "source_file": module.__file__, "source_sha256": snapshot.object_id,
                 "git_commit": None, "git_dirty": None, "snapshot": snapshot.to_json()}


@functools.cache
def _owners() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def _distribution(module: str, path: str | None) -> tuple[str, str] | None:
    """The installed distribution that owns ``module``'s file (its name and version)."""
    top = module.partition(".")[0]
    if top == "modelyard":  # ours, even when run from a working copy
        return "modelyard", __version__
    if not path:
        return None
    for name in _owners().get(top, []):
        dist = metadata.distribution(name)
        try:
            relative = Path(path).resolve().relative_to(
                Path(str(dist.locate_file(""))).resolve()).as_posix()
        except ValueError:
            continue
        if any(file.as_posix() == relative for file in dist.files or []):
            return str(dist.metadata["Name"]), dist.version
    return None


def _check_version(snapshot: Snapshot) -> None:
    name = str(snapshot.distribution)
    try:
        installed = __version__ if name == "modelyard" else metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None
    if installed != snapshot.version:
        log.warning("%s:%s was trained with %s %s; %s is installed here", snapshot.module,
                    snapshot.qualname, name, snapshot.version, installed or "none")
