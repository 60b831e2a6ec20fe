"""Two or more trained jobs side by side: what the compare page shows.

Metrics with their deltas against the first job; where the registry holds a champion/challenger
comparison between two of them (one was trained while the other was production, and its worker
scored both on its holdout rows), those same-row figures (:func:`~modelyard.registry.versions.
same_rows`); each job's curves (:mod:`modelyard.jobs.plots`); and what differs in what went in:
the request (as YAML, a unified diff) and its parameters, the data's fingerprint, the workflow's
code (:mod:`modelyard.jobs.provenance`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from modelyard.artifacts import ArtifactStore
from modelyard.errors import Conflict, NotFound, RequestError
from modelyard.jobs import store
from modelyard.jobs.diffs import TextDiff, as_yaml, flatten, unified
from modelyard.jobs.plots import JobPlots, job_plots
from modelyard.jobs.provenance import Provenance, read_provenance
from modelyard.registry import store as registry

MAX_COMPARED = 10
_NOT_COMPARED = {"notes", "task", "holdout_rows", "positive_class"}
# Which way is better, for the metrics evaluation computes (a delta of another is uncoloured).
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "accuracy": True, "f1_macro": True,
                    "r2": True, "rmse": False, "mae": False, "log_loss": False, "brier": False}


@dataclasses.dataclass(frozen=True)
class ComparedJob:
    job_id: str
    label: str  # how the page names it: its version ("v3") or the start of its id
    model_name: str
    tenant: str | None
    state: str
    version: int | None  # the registry version its model became, if it did
    metrics: dict[str, Any]
    request: dict[str, Any]
    provenance: Provenance | None
    plots: JobPlots | None


@dataclasses.dataclass(frozen=True)
class MetricRow:
    """One metric across the jobs; ``deltas[i]``: job i's value minus the first's."""

    name: str
    values: list[Any]
    deltas: list[float | None]
    higher_is_better: bool | None = None

    def better(self, i: int) -> bool | None:
        """Whether job i's delta is an improvement (None: no delta, or no known direction)."""
        delta = self.deltas[i]
        if not delta or self.higher_is_better is None:
            return None
        return (delta > 0) == self.higher_is_better


@dataclasses.dataclass(frozen=True)
class SameRowsMetric:
    name: str
    champion: float
    challenger: float
    delta: float


@dataclasses.dataclass(frozen=True)
class SameRows:
    """Champion and challenger on the challenger's holdout rows, as the registry compared them."""

    model_name: str
    tenant: str
    champion: int
    challenger: int
    rows: int | None
    metrics: list[SameRowsMetric]


@dataclasses.dataclass(frozen=True)
class ValueRow:
    """One field across the jobs (a request parameter, a fingerprint's digest...)."""

    name: str
    values: list[str | None]

    @property
    def differs(self) -> bool:
        return len(set(self.values)) > 1


@dataclasses.dataclass(frozen=True)
class Comparison:
    jobs: list[ComparedJob]
    metrics: list[MetricRow]
    same_rows: list[SameRows]
    parameters: list[ValueRow]  # the request's fields that differ
    data: list[ValueRow]
    request_diffs: list[TextDiff]  # each later job's request against the first's
    code_diffs: list[TextDiff]


def job_ids_of_versions(session: Session, model_name: str, versions: Sequence[int],
                        tenant: str) -> list[str]:
    """The jobs that trained ``versions`` of (model, tenant), in that order.

    Raises:
        NotFound: no such version.
        Conflict: a version was registered without a job (imported), so nothing to compare.
    """
    ids = []
    for number in versions:
        row = registry.read_version(session, model_name, number, tenant)
        if row.job_id is None:
            raise Conflict(f"version {number} of {model_name!r} was registered without a job; "
                           "only versions trained by Modelyard can be compared")
        ids.append(row.job_id)
    return ids


def compare_jobs(session: Session, artifacts: ArtifactStore, job_ids: Sequence[str], *,
                 redact: Callable[[str], str]) -> Comparison:
    """``job_ids`` side by side, oldest first: the first trained is the baseline that deltas
    and diffs are taken against. ``redact`` rewrites the server's paths in what the comparison
    shows (the data files').

    Raises:
        RequestError: fewer than two jobs, more than :data:`MAX_COMPARED`, or one twice.
        NotFound: no such job.
    """
    if len(job_ids) < 2 or len(job_ids) > MAX_COMPARED or len(set(job_ids)) < len(job_ids):
        raise RequestError(f"compare takes 2 to {MAX_COMPARED} different jobs, got "
                           f"{', '.join(job_ids) or 'none'}; pick them in the jobs list")
    rows = store.read_jobs(session, job_ids)
    missing = [j for j in job_ids if j not in rows]
    if missing:
        raise NotFound(f"no job {missing[0]!r} to compare; list jobs with GET /jobs")
    versions = {v.job_id: v for v in registry.versions_of_jobs(session, job_ids)}
    oldest_first = sorted(job_ids, key=lambda j: (rows[j].created_at, j))
    jobs = [_compared(artifacts, rows[j], versions.get(j)) for j in oldest_first]
    if len({j.label for j in jobs}) < len(jobs):  # versions of different models or tenants
        jobs = [dataclasses.replace(j, label=j.job_id[:8]) for j in jobs]
    return Comparison(
        jobs=jobs, metrics=_metric_rows(jobs),
        same_rows=_same_rows(session, jobs, versions),
        parameters=[r for r in _parameters(jobs) if r.differs],
        data=_data_rows(jobs, redact),
        request_diffs=[unified("request", as_yaml(jobs[0].request), as_yaml(j.request),
                               jobs[0].label, j.label) for j in jobs[1:]],
        code_diffs=[unified("workflow code", _code(jobs[0]), _code(j), jobs[0].label, j.label)
                    for j in jobs[1:]])


def _compared(artifacts: ArtifactStore, job: Any, version: Any) -> ComparedJob:
    plots = None
    try:
        plots = job_plots(artifacts, job)
    except (Conflict, NotFound):
        pass  # a job without an evaluation is compared on what it has
    number = version.version if version is not None else None
    return ComparedJob(
        job_id=job.id, label=f"v{number}" if number else job.id[:8],
        model_name=job.model_name, tenant=job.tenant, state=job.state, version=number,
        metrics=dict((job.result or {}).get("metrics") or {}), request=dict(job.request),
        provenance=read_provenance(artifacts, job.id), plots=plots)


def _metric_rows(jobs: list[ComparedJob]) -> list[MetricRow]:
    names = list(dict.fromkeys(k for j in jobs for k in j.metrics if k not in _NOT_COMPARED))
    rows = []
    for name in names:
        values = [j.metrics.get(name) for j in jobs]
        rows.append(MetricRow(name, values, [_delta(values[0], v) for v in values],
                              HIGHER_IS_BETTER.get(name)))
    return rows


def _delta(base: Any, value: Any) -> float | None:
    numbers = [x for x in (base, value) if isinstance(x, int | float) and not isinstance(x, bool)]
    return float(value - base) if len(numbers) == 2 else None


def _same_rows(session: Session, jobs: list[ComparedJob], versions: dict[str | None, Any]
               ) -> list[SameRows]:
    first = versions.get(jobs[0].job_id)
    out = []
    for job in jobs[1:]:
        other = versions.get(job.job_id)
        if first is None or other is None or (first.model_name, first.tenant) != (
                other.model_name, other.tenant):
            continue
        found = registry.compare_versions(session, first.model_name, first.version,
                                          other.version, first.tenant)["same_rows"]
        if found:
            out.append(SameRows(
                first.model_name, first.tenant, found["champion"], found["challenger"],
                found.get("rows"), [SameRowsMetric(m["metric"], m["champion"], m["challenger"],
                                                   m["delta"]) for m in found["metrics"]]))
    return out


def _parameters(jobs: list[ComparedJob]) -> list[ValueRow]:
    flat = [flatten(j.request) for j in jobs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [ValueRow(k, [None if k not in f else as_yaml(f[k]).strip().removesuffix("...")
                         .strip() for f in flat]) for k in keys]


def _data_rows(jobs: list[ComparedJob], redact: Callable[[str], str]) -> list[ValueRow]:
    def field(read: Callable[[Provenance], Any]) -> list[str | None]:
        return [None if j.provenance is None or read(j.provenance) is None
                else redact(str(read(j.provenance))) for j in jobs]

    return [ValueRow("digest", field(lambda p: p.data_digest)),
            ValueRow("path", field(lambda p: p.data_path)),
            ValueRow("files", field(lambda p: p.file_count)),
            ValueRow("rows in the files", field(lambda p: p.total_rows)),
            ValueRow("rows (train / holdout)", field(lambda p: " / ".join(
                str(p.row_counts.get(k, "?")) for k in ("train", "holdout"))))]


def _code(job: ComparedJob) -> str:
    if job.provenance is None:
        return "# no provenance recorded (the job did not train a model)\n"
    code = job.provenance.code
    if code.kind == "source" and code.text is not None:
        return code.text
    if code.kind == "distribution":
        return f"# {code.workflow_class}: installed from {code.distribution} {code.version}\n"
    return f"# {code.workflow_class}: no snapshot of its code was kept\n"
