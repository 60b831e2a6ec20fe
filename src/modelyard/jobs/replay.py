"""Replays: a succeeded job's request run again as a new job, and its model compared with the
original's.

A replay is a real job, queued and run by a worker like any other, with the original's request
exactly as stored and ``replay_of`` naming the original. It answers one question: does the same
request train the same model? So its model is not registered (a second version of the same
bytes, or an unasked-for candidate that an auto-promoting policy could send to production,
would be noise in the registry); it stays in the artefact store and the job's result. Once it
succeeded, :func:`compare` reads both jobs' ``provenance.json`` and says whether the model's
sha256 matches, and if not why: the data changed (its fingerprint), packages differ (named,
Python's version among them), the workflow's code differs (its source sha256), or, all equal,
the workflow is not deterministic.

Only single train jobs replay: a fleet's parent plans, and its children train on per-tenant
files the fleet wrote and are graduated together; ``POST /jobs/{id}/retry`` retrains a fleet's
tenants.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import Session

from modelyard.artifacts import ArtifactStore
from modelyard.errors import Conflict, NotFound, RequestError
from modelyard.jobs import store
from modelyard.jobs.states import JobState
from modelyard.jobs.step_jobs import STEP_KIND
from modelyard.jobs.tables import JobRow
from modelyard.request.loading import parse_request

Verdict = Literal["pending", "failed", "reproduced", "differs"]
Reason = Literal["data_changed", "packages_differ", "workflow_code_differs",
                 "not_deterministic"]
FILES_SHOWN = 20  # changed data files a comparison names


@dataclasses.dataclass(frozen=True)
class Change:
    """One thing that differs between the original and the replay: a package (or ``python``)
    by version, or a data file by its fingerprint entry (size, mtime, rows)."""

    name: str
    original: str | None
    replay: str | None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A replay against its original, as ``GET /jobs/{id}/replay`` answers it."""

    replay_job_id: str
    original_job_id: str
    state: str  # the replay's
    verdict: Verdict
    explanation: str
    original_model_id: str | None
    replay_model_id: str | None
    same_model: bool | None
    reasons: list[Reason]
    original_data_digest: str | None = None
    replay_data_digest: str | None = None
    data_files: list[Change] = dataclasses.field(default_factory=list)
    packages: list[Change] = dataclasses.field(default_factory=list)
    original_workflow_sha256: str | None = None
    replay_workflow_sha256: str | None = None


def replay_job(session: Session, job_id: str, *, executor: str, logs_dir: Path,
               submitted_by: str | None = None) -> JobRow:
    """Queue a replay of succeeded train job ``job_id`` (commits); returns the new job.

    Raises:
        NotFound: no such job.
        Conflict: it is not a single train job, or it did not succeed (nothing to compare).
        RequestError: its stored request no longer follows the contract.
    """
    original = store.read_job(session, job_id)
    if original.kind == STEP_KIND:
        raise Conflict(f"job {job_id} is a pipeline step; replay reruns train jobs: rerun its "
                       "pipeline run from that step (`modelyard pipelines rerun RUN_ID --from "
                       "STEP`)")
    if original.kind != "train":
        raise Conflict(
            f"job {job_id} is a fleet's {original.kind} job; replay reruns single train jobs "
            "(a fleet's tenants train on files the fleet wrote): retrain tenants with POST "
            f"/jobs/{original.parent_id or job_id}/retry")
    if original.state != JobState.succeeded.value:
        raise Conflict(f"job {job_id} is {original.state}; only a succeeded job has a model to "
                       "compare a replay with: submit its request again with POST /train")
    try:
        template = parse_request(original.request)
    except RequestError as exc:
        raise RequestError(f"job {job_id}'s stored request no longer follows the train "
                           f"request contract: {exc}") from None
    new = store.NewJob(original.request, "train", replay_of=original.id)
    (replay_id,) = store.insert_jobs(session, template, [new], executor=executor,
                                     logs_dir=logs_dir, submitted_by=submitted_by)
    session.commit()
    return store.read_job(session, replay_id)


def compare(session: Session, artifacts: ArtifactStore, job_id: str) -> Comparison:
    """How replay ``job_id`` compares with its original (``pending`` until it ends).

    Raises:
        NotFound: no such job.
        Conflict: the job is no replay.
    """
    replay = store.read_job(session, job_id)
    if replay.replay_of is None:
        raise Conflict(f"job {job_id} is no replay; replay it with POST /jobs/{job_id}/replay "
                       f"or `modelyard jobs replay {job_id}`")
    original = store.read_job(session, replay.replay_of)
    base: dict[str, Any] = {
        "replay_job_id": replay.id, "original_job_id": original.id, "state": replay.state,
        "original_model_id": original.model_id, "replay_model_id": replay.model_id}
    if replay.state != JobState.succeeded.value:
        if not JobState(replay.state).terminal:
            return Comparison(**base, verdict="pending", same_model=None, reasons=[],
                              explanation=f"the replay is {replay.state}")
        message = (replay.exception_info or {}).get("message") or "no error recorded"
        return Comparison(**base, verdict="failed", same_model=None, reasons=[],
                          explanation=f"the replay {replay.state}: {message}")
    before, after = _provenance(artifacts, original.id), _provenance(artifacts, replay.id)
    return _compared(base, original.model_id == replay.model_id, before, after)


def _provenance(artifacts: ArtifactStore, job_id: str) -> dict[str, Any]:
    """The job's ``provenance.json``; empty if its artefacts are gone (then nothing is known to
    differ but the model)."""
    try:
        record: dict[str, Any] = artifacts.read_job_json(job_id, "provenance.json")
    except NotFound:
        return {}
    return record


def _compared(base: dict[str, Any], same: bool, before: dict[str, Any],
              after: dict[str, Any]) -> Comparison:
    data_before, data_after = before.get("data") or {}, after.get("data") or {}
    files = _file_changes(data_before, data_after)
    packages = _package_changes(before, after)
    code_before = (before.get("workflow") or {}).get("source_sha256")
    code_after = (after.get("workflow") or {}).get("source_sha256")
    reasons: list[Reason] = []
    if data_before.get("digest") != data_after.get("digest"):
        reasons.append("data_changed")
    if packages:
        reasons.append("packages_differ")
    if code_before != code_after:
        reasons.append("workflow_code_differs")
    if not same and not reasons:
        reasons.append("not_deterministic")
    return Comparison(
        **base, verdict="reproduced" if same else "differs", same_model=same,
        reasons=reasons, explanation=_explain(same, reasons, packages),
        original_data_digest=data_before.get("digest"),
        replay_data_digest=data_after.get("digest"), data_files=files[:FILES_SHOWN],
        packages=packages, original_workflow_sha256=code_before,
        replay_workflow_sha256=code_after)


def _file_changes(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """The data files added, removed or rewritten, by their fingerprint entries."""
    old = {f["path"]: f for f in before.get("files") or []}
    new = {f["path"]: f for f in after.get("files") or []}
    return [Change(path, _file_line(old.get(path)), _file_line(new.get(path)))
            for path in sorted(old.keys() | new.keys()) if old.get(path) != new.get(path)]


def _file_line(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return None
    rows = f", {entry['num_rows']} rows" if entry.get("num_rows") is not None else ""
    return f"{entry.get('size')} bytes, modified {entry.get('mtime')}{rows}"


def _package_changes(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    old = {**(before.get("packages") or {}), "python": before.get("python")}
    new = {**(after.get("packages") or {}), "python": after.get("python")}
    return [Change(name, old.get(name), new.get(name))
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]


def _explain(same: bool, reasons: list[Reason], packages: list[Change]) -> str:
    if same:
        extra = f" (though {_listed(reasons, packages)})" if reasons else ""
        return f"the replay trained the same model: its sha256 matches{extra}"
    if reasons == ["not_deterministic"]:
        return ("the model's sha256 differs with the same data, packages and workflow code: "
                "the workflow is not deterministic (seed its randomness, e.g. random_state)")
    return f"the model's sha256 differs: {_listed(reasons, packages)}"


def _listed(reasons: list[Reason], packages: list[Change]) -> str:
    words = {"data_changed": "the data changed (its fingerprint differs)",
             "workflow_code_differs": "the workflow's code differs (its source sha256)",
             "packages_differ": "packages differ: " + ", ".join(
                 f"{p.name} {p.original or '-'} -> {p.replay or '-'}" for p in packages)}
    return "; ".join(words[r] for r in reasons if r in words)
