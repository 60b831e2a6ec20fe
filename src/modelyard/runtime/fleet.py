"""Fleets in the worker: plan (scan once, partition by tenant) and graduate (tenant vs fallback).

A fleet request (``tenants:``) first runs as a *plan* job: the data is scanned once with the
filters and the holdout window pushed down, sorted by tenant and written as one Arrow IPC file per
tenant under ``<artifacts>/fleets/<job id>/``. The plan says, per tenant, how many training and
holdout rows it has, its segment, and whether it qualifies for a model of its own. The children
(global, segments, tenants) then read only their own partition. The partitions are written
biggest tenant first, in a few chunks, each reported as soon as it is written: with free slots,
the first tenants train while the plan writes the rest.

Every child trains at once. The global and segment children also score their holdout per tenant,
so each tenant's model can be compared with its fallback on exactly its own holdout rows: the
tenant's model *graduates* only if it beats the fallback there (decided when the fleet ends).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.artifacts import ArtifactStore
from modelyard.errors import DataError
from modelyard.protocol.results import GRADUATION_METRIC, FleetPlan, TenantPlan
from modelyard.request.models import Tenants, TrainRequest
from modelyard.runtime.filters import scalar_for
from modelyard.runtime.workflow import Task

Ready = Callable[[list[TenantPlan], list[str]], None]
"""Told each chunk of qualifying tenants once their partitions are written, with the fleet's
segments: ``ready(tenants, segments)``."""

# The first chunk holds the biggest tenants up to this share of the qualifying rows, and each
# next one as many rows as all before it: the first tenants can start while a sixteenth of the
# rows is written, and a fleet of any size reports in five chunks or fewer.
FIRST_CHUNK_SHARE = 1 / 16


def plan(request: TrainRequest, table: pa.Table, store: ArtifactStore, parent_id: str,
         row_counts: dict[str, int] | None = None, ready: Ready | None = None) -> FleetPlan:
    """Partition ``table`` (filtered, within the holdout window) by tenant; say who qualifies.

    The qualifying tenants' partitions are written biggest first, in chunks; ``ready`` is told
    each chunk as soon as it is written, so their models can start while the rest is written.
    """
    spec = request.tenants
    if spec is None:
        raise DataError("not a fleet request: it has no tenants block")
    column = spec.column
    if table[column].null_count:
        raise DataError(f"tenants.column {column!r} has {table[column].null_count:,} empty "
                        f"values; filter them out (predicate IsNotNull on {column!r})")
    tenant_col = pc.cast(table[column], pa.string())
    table = table.set_column(table.schema.get_field_index(column), column, tenant_col)
    # Rows grouped by tenant, found from integer codes: no Python string per row, and no
    # reordered copy of the whole table (each qualifying tenant's rows are taken on their own).
    order, codes, names = _order_by_tenant(tenant_col)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else (
        np.array([], dtype=int))
    root = store.fleet_root(parent_id)
    out, chosen = _judge(request, spec, table, order, _Groups(starts, codes, names), store,
                         root)
    seg_names = sorted({e.segment for e in out if e.segment}) if spec.segment_column else []
    store.fs.makedirs(f"{_strip(store, root)}/tenants", exist_ok=True)
    _write(store, table, order, sorted(chosen, key=lambda c: c.end - c.start, reverse=True),
           lambda tenants: ready(tenants, seg_names) if ready is not None else None)
    if spec.include != "all":
        missing = sorted(set(spec.include) - {e.tenant for e in out})
        out += [TenantPlan(tenant=t, rows=0, train_rows=0, holdout_rows=0, qualifies=False,
                           reason="no rows for this tenant after the filters") for t in missing]
    return FleetPlan(root=root, column=column, segment_column=spec.segment_column,
                     global_model=spec.global_model, segments=seg_names, tenants=out,
                     row_counts=dict(row_counts or {}))


@dataclasses.dataclass(frozen=True)
class _Groups:
    """The tenants' groups of rows in the sorted order: where each starts, each row's tenant
    code, and the tenant names by code."""

    starts: np.ndarray[Any, Any]
    codes: np.ndarray[Any, Any]
    names: np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class _Chosen:
    """A qualifying tenant: its partition's path, and its rows (``start:end`` of the order)."""

    path: str
    start: int
    end: int
    entry: TenantPlan


def _judge(request: TrainRequest, spec: Tenants, table: pa.Table, order: np.ndarray[Any, Any],
           groups: _Groups, store: ArtifactStore, root: str
           ) -> tuple[list[TenantPlan], list[_Chosen]]:
    """Each tenant's entry in the plan, in tenant order, and the qualifying ones' partitions."""
    starts = groups.starts
    ends = np.r_[starts[1:], len(groups.codes)]
    train_mask = _train_mask(request, table, order)
    # Per tenant, in one pass each: its training rows, and whether they hold two label values.
    train_rows_of = np.add.reduceat(train_mask, starts)
    two_labels = _two_values(table[request.train.label], order, train_mask, starts)
    segments = (table[spec.segment_column].to_numpy(zero_copy_only=False)[order]
                if spec.segment_column else None)
    wanted = None if spec.include == "all" else set(spec.include)
    out: list[TenantPlan] = []
    chosen: list[_Chosen] = []
    tenant_names = groups.names[groups.codes[starts]].tolist()
    for index, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        tenant = str(tenant_names[index])
        if wanted is not None and tenant not in wanted:
            continue
        train_rows = int(train_rows_of[index])
        holdout_rows = end - start - train_rows
        segment = None
        if segments is not None:
            values, counts = np.unique(segments[start:end].astype(str), return_counts=True)
            segment = str(values[int(np.argmax(counts))])
        if train_rows < spec.min_training_rows:
            qualifies, reason = False, (
                f"too few training rows ({train_rows:,} < min_training_rows "
                f"{spec.min_training_rows:,})")
        elif holdout_rows == 0:
            qualifies, reason = False, "no holdout rows to evaluate a model on"
        elif not two_labels[index]:
            qualifies, reason = False, (
                f"label {request.train.label!r} has a single value in its training rows")
        else:
            qualifies, reason = True, "enough rows for a model of its own"
        path = f"{_strip(store, root)}/tenants/t{index:06d}.arrow" if qualifies else None
        entry = TenantPlan(tenant=tenant, rows=int(end - start), train_rows=train_rows,
                           holdout_rows=holdout_rows, qualifies=qualifies, reason=reason,
                           segment=segment, path=store.url(path) if path else None)
        out.append(entry)
        if path is not None:
            chosen.append(_Chosen(path, start, end, entry))
    return out, chosen


def _write(store: ArtifactStore, table: pa.Table, order: np.ndarray[Any, Any],
           chosen: list[_Chosen], ready: Callable[[list[TenantPlan]], None]) -> None:
    """Write the ``chosen`` tenants' partitions, chunk by chunk (:data:`FIRST_CHUNK_SHARE`),
    telling ``ready`` each chunk's tenants once their files are whole.

    One gather of a chunk's rows (the small tenants' are never copied), then a file per
    tenant: read once, whole, by one child, so Arrow's own format rather than parquet, with
    no encoding to write or decode.
    """
    for chunk in _chunks([c.end - c.start for c in chosen]):
        part = chosen[chunk]
        grouped = table.take(np.concatenate([order[c.start:c.end] for c in part]))
        at = 0
        for c in part:
            with store.fs.open(c.path, "wb") as fh, pa.ipc.new_file(fh, table.schema) as writer:
                writer.write_table(grouped.slice(at, c.end - c.start))
            at += c.end - c.start
        ready([c.entry for c in part])


def _chunks(rows: list[int]) -> list[slice]:
    """Consecutive chunks of ``rows`` (biggest first): the first up to
    :data:`FIRST_CHUNK_SHARE` of their sum (at least one), each next as big as all before it."""
    out: list[slice] = []
    goal, total, at = sum(rows) * FIRST_CHUNK_SHARE, 0, 0
    for i, n in enumerate(rows):
        total += n
        if total >= goal or i == len(rows) - 1:
            out.append(slice(at, i + 1))
            at, goal = i + 1, 2 * total
    return out


def _order_by_tenant(tenants: pa.ChunkedArray) -> tuple[np.ndarray[Any, Any],
                                                       np.ndarray[Any, Any],
                                                       np.ndarray[Any, Any]]:
    """Row order grouped by tenant, tenants in sorted order, rows in their order within each;
    with each row's tenant code in that order, and the tenant names by code.

    Sorting the distinct values and then integer codes is cheaper than sorting the strings of
    every row.
    """
    encoded = pc.dictionary_encode(tenants.combine_chunks())
    names = encoded.dictionary.to_numpy(zero_copy_only=False)
    # Up to 32,767 tenants, 16-bit codes: numpy's stable sort of them is a radix sort, much
    # cheaper than its merge sort of 64-bit codes.
    rank = np.empty(len(names), dtype=np.int16 if len(names) < 2**15 else np.int64)
    by_name = np.argsort(names, kind="stable")
    rank[by_name] = np.arange(len(names))
    ranked = rank[encoded.indices.to_numpy()]
    order: np.ndarray[Any, Any] = np.argsort(ranked, kind="stable")
    return order, ranked[order], names[by_name]


def _two_values(column: pa.ChunkedArray, order: np.ndarray[Any, Any],
                rows: np.ndarray[Any, Any], starts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Per group of ``order`` (beginning at ``starts``): do its ``rows`` (a mask) hold at least
    two distinct values of ``column``? A missing value counts as one value of its own."""
    if not len(starts):
        return np.zeros(0, dtype=bool)
    encoded = pc.dictionary_encode(column.combine_chunks())
    codes = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy()[order]
    lowest = np.minimum.reduceat(np.where(rows, codes, np.iinfo(codes.dtype).max), starts)
    highest = np.maximum.reduceat(np.where(rows, codes, -1), starts)
    return np.asarray(highest > lowest)


def _train_mask(request: TrainRequest, table: pa.Table, order: np.ndarray[Any, Any]
                ) -> np.ndarray[Any, Any]:
    """Which rows (in ``order``) fall before the holdout: the plan's estimate of each tenant's
    training rows (a random-fraction child draws its own split)."""
    drs = request.holdout_sampling.date_range_sampling
    if request.holdout_sampling.sampling_function == "DATE_RANGE" and drs is not None:
        lo = scalar_for(drs.start_date, table.schema.field(drs.date_column))
        mask: np.ndarray[Any, Any] = np.asarray(
            pc.less(table[drs.date_column], lo).to_numpy(zero_copy_only=False), dtype=bool)[order]
        return mask
    rfs = request.holdout_sampling.random_fraction_sampling
    fraction = rfs.fraction if rfs else 0.2
    draws: np.ndarray[Any, Any] = np.random.default_rng(0).random(table.num_rows)
    return draws >= fraction


def _strip(store: ArtifactStore, url: str) -> str:
    return str(store.fs._strip_protocol(url))


def per_tenant_metrics(task: Task, holdout_df: Any, label: str, tenant_column: str,
                       scores: Any) -> dict[str, float | None]:
    """The fallback's graduation metric on each tenant's holdout rows, in one vectorised pass.

    A global or segment model scores every holdout row once; grouping by tenant gives, for each
    tenant, the number its own model must beat, on exactly the rows that model is tested on.
    ROC AUC per group comes from within-group ranks (the Mann-Whitney form), so a thousand
    tenants cost one sort rather than a thousand metric calls.
    """
    import pandas as pd

    metric, _ = GRADUATION_METRIC[task]
    frame = pd.DataFrame({"tenant": holdout_df[tenant_column].astype(str).to_numpy(),
                          "y": holdout_df[label].to_numpy(),
                          "s": np.asarray(scores, dtype=float).reshape(len(holdout_df), -1)[:, -1]})
    if metric == "rmse":
        err = (frame["y"].astype(float) - frame["s"]) ** 2
        rmse = np.sqrt(err.groupby(frame["tenant"]).mean())
        return {str(t): float(v) for t, v in rmse.items()}
    if metric != "roc_auc":
        return {}  # multi-class graduation would need the full probability matrix
    positive = sorted(frame["y"].dropna().unique().tolist())[-1]
    frame["pos"] = (frame["y"] == positive).astype(float)
    frame["rank"] = frame.groupby("tenant")["s"].rank(method="average")
    groups = frame.groupby("tenant")
    n_pos = groups["pos"].sum()
    n = groups.size()
    rank_pos = (frame["rank"] * frame["pos"]).groupby(frame["tenant"]).sum()
    n_neg = n - n_pos
    auc = (rank_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return {str(t): (float(v) if n_pos[t] > 0 and n_neg[t] > 0 else None) for t, v in auc.items()}
