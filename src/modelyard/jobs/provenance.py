"""A trained job's provenance, typed: the workflow code it ran (its snapshot), the packages,
the data it read (its fingerprint) and the time each step took.

The worker writes ``provenance.json`` into the job's folder (:mod:`modelyard.runtime.job_files`);
this reads it back for the job and compare pages. A source snapshot's text comes from the
artefact store, where the worker put the module's bytes under their sha256
(:mod:`modelyard.runtime.snapshot`); a distribution's code is named by its name and version.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from modelyard.artifacts import ArtifactStore
from modelyard.errors import ArtifactError, NotFound

MAX_SOURCE_BYTES = 512 * 1024  # a snapshot past this is named by its hash, not shown


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One file the job read, as its fingerprint recorded it."""

    path: str
    size: int | None
    mtime: str | None
    rows: int | None


@dataclasses.dataclass(frozen=True)
class CodeSnapshot:
    """The workflow's code: ``source`` (its module's text is ``text``), ``distribution`` (the
    installed release ``distribution`` ``version``), or ``none`` (nothing was recorded)."""

    kind: Literal["source", "distribution", "none"]
    workflow_class: str
    source_file: str | None = None
    source_sha256: str | None = None
    git_commit: str | None = None
    distribution: str | None = None
    version: str | None = None
    text: str | None = None


@dataclasses.dataclass(frozen=True)
class Provenance:
    job_id: str
    request_hash: str | None
    code: CodeSnapshot
    packages: dict[str, str]
    python: str | None
    data_path: str | None
    data_digest: str | None
    data_files: list[DataFile]
    file_count: int | None
    total_rows: int | None
    schema: dict[str, str]
    row_counts: dict[str, int]
    durations_s: dict[str, float]


def read_provenance(artifacts: ArtifactStore, job_id: str) -> Provenance | None:
    """The job's provenance; None when it has none (it did not train a model, or its
    artefacts are gone)."""
    try:
        record: dict[str, Any] = artifacts.read_job_json(job_id, "provenance.json")
    except NotFound:
        return None
    data = record.get("data") or {}
    return Provenance(
        job_id=job_id, request_hash=record.get("request_hash"),
        code=_code(artifacts, record.get("workflow") or {}),
        packages={str(k): str(v) for k, v in (record.get("packages") or {}).items()},
        python=record.get("python"), data_path=data.get("path"),
        data_digest=data.get("digest"),
        data_files=[DataFile(str(f.get("path")), f.get("size"), f.get("mtime"),
                             f.get("num_rows")) for f in data.get("files") or []],
        file_count=data.get("file_count"), total_rows=data.get("total_rows"),
        schema={str(k): str(v) for k, v in (data.get("schema") or {}).items()},
        row_counts={str(k): int(v) for k, v in (record.get("row_counts") or {}).items()},
        durations_s={str(k): float(v) for k, v in (record.get("durations_s") or {}).items()})


def _code(artifacts: ArtifactStore, workflow: dict[str, Any]) -> CodeSnapshot:
    snapshot = workflow.get("snapshot") or {}
    base = CodeSnapshot("none", str(workflow.get("class") or workflow.get("name") or ""),
                        source_file=workflow.get("source_file"),
                        source_sha256=workflow.get("source_sha256"),
                        git_commit=workflow.get("git_commit"))
    if snapshot.get("kind") == "distribution":
        return dataclasses.replace(base, kind="distribution",
                                   distribution=snapshot.get("distribution"),
                                   version=snapshot.get("version"))
    if snapshot.get("kind") == "source" and snapshot.get("object_id"):
        return dataclasses.replace(base, kind="source",
                                   text=_source_text(artifacts, snapshot["object_id"]))
    return base


def _source_text(artifacts: ArtifactStore, object_id: str) -> str | None:
    try:
        data = artifacts.get_bytes(object_id)
    except (NotFound, ArtifactError):
        return None
    if len(data) > MAX_SOURCE_BYTES:
        return None
    return data.decode("utf-8", errors="replace")
