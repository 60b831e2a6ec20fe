"""What a worker is told: a job row as a :class:`~modelyard.protocol.WorkerSpec`.

The spec carries everything the worker needs and no handle to the server: the request, where
data may be read (the server's data roots, plus a fleet's partitions for its children), where
artefacts go, the log file, the memory and thread budget, and a fleet child's role. Packed jobs
travel as one spec whose ``pack`` holds theirs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from modelyard.artifacts import ArtifactStore
from modelyard.jobs.fleet_records import role_of
from modelyard.jobs.step_jobs import STEP_KIND, step_of
from modelyard.jobs.tables import JobRow
from modelyard.protocol.events import Champion, WorkerSpec
from modelyard.registry.stages import GLOBAL_TENANT
from modelyard.registry.versions import production_versions
from modelyard.settings import Settings


def champions(session: Session, jobs: Sequence[JobRow]) -> dict[str, Champion]:
    """The production version of each training job's (model, tenant), by job id, in one query:
    the worker scores it on the candidate's holdout rows (a fleet's plan job and a pipeline
    step train nothing)."""
    training = [j for j in jobs if j.kind not in ("fleet", STEP_KIND)]
    keys = {j.id: (j.model_name, j.tenant or GLOBAL_TENANT) for j in training}
    found = production_versions(session, list(set(keys.values())))
    return {job_id: Champion(version_id=v.id, version=v.version, model_id=v.model_id,
                             job_id=v.job_id)
            for job_id, key in keys.items() if (v := found.get(key)) is not None}


def worker_spec(job: JobRow, settings: Settings, artifacts: ArtifactStore,
                champion: Champion | None = None) -> WorkerSpec:
    """The spec of one job, as this server's settings run it."""
    roots = settings.data_roots
    if job.parent_id and job.fleet is not None:
        roots = (*roots, artifacts.fleet_root(job.parent_id))
    return WorkerSpec(
        job_id=job.id,
        request=job.request,
        data_roots=roots,
        artifact_root=settings.artifact_root,
        workflow_modules=settings.workflow_modules,
        workflow_packages=settings.workflow_packages,
        log_path=job.log_file,
        memory_limit=settings.job_memory_limit,
        threads=threads_of(job, settings),
        fleet=role_of(job),
        champion=champion,
        replay_of=job.replay_of,
        workflow_snapshot=original_snapshot(job, artifacts),
        step=step_of(job),
        step_commands=settings.step_commands,
        step_images=settings.step_images,
    )


def original_snapshot(job: JobRow, artifacts: ArtifactStore) -> dict[str, Any] | None:
    """A replay's original workflow code snapshot (None: not a replay, or the original had none,
    or its provenance is gone: the replay then resolves the workflow by name, and its
    comparison says whether the code differs)."""
    if job.replay_of is None:
        return None
    try:
        provenance = artifacts.read_job_json(job.replay_of, "provenance.json")
    except Exception:  # gone or unreadable: compared, not refused
        return None
    snapshot = (provenance.get("workflow") or {}).get("snapshot")
    return dict(snapshot) if isinstance(snapshot, dict) else None


def pack_spec(specs: list[WorkerSpec], *, refill: bool) -> WorkerSpec:
    """One worker's spec for ``specs`` run one after another; with ``refill``, a pack that asks
    for more as its last job starts. Its id is its first job's, prefixed ``pack-``."""
    if not specs:
        raise ValueError("pack_spec needs at least one spec to pack; got none")
    first = specs[0]
    return dataclasses.replace(first, job_id=f"pack-{first.job_id}", pack=tuple(specs),
                               refill=refill)


def threads_of(job: JobRow, settings: Settings) -> int:
    """A job's share of the cores: its resources.num_cpus, else cores / concurrency."""
    asked = (job.request.get("resources") or {}).get("num_cpus")
    if asked:
        return max(1, int(asked))
    return settings.job_threads
