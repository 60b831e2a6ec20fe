"""The shadow log: production and shadow scores of the same rows, and labels that come later.

Records are buffered in memory and flushed as parquet parts, partitioned by model and day::

    HOME/shadow/model=<name>/date=<YYYY-MM-DD>/part-<uuid>.parquet
    HOME/labels/model=<name>/part-<uuid>.parquet

Each part is written under a temporary name and renamed, so readers never see half a file.

A label is matched when its ``(request_id, row)`` is a logged prediction of its model: in the
production log (:mod:`modelyard.serving.production_log`, the ``--log-sample`` fraction of
requests) or in the shadow log (the predictions a shadow version scored beside production), so
a label for a request sampled out of both, dropped from a full buffer, or still buffered by
another replica is *unknown*. Unknown labels are stored all the same (reports join labels to
the logs when they run, so a label that arrives before its prediction is written still counts
then), unless the caller asks for ``strict``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
import urllib.parse
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from modelyard.errors import RequestError

SHADOW_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("row", pa.int32()), ("at", pa.timestamp("us", tz="UTC")),
    ("model_name", pa.string()), ("tenant", pa.string()), ("production_version", pa.int32()),
    ("production_score", pa.float64()), ("shadow_version", pa.int32()),
    ("shadow_score", pa.float64()),
])
LABEL_SCHEMA = pa.schema([("request_id", pa.string()), ("row", pa.int32()),
                          ("label", pa.float64()), ("at", pa.timestamp("us", tz="UTC"))])
UNKNOWN_SHOWN = 10  # unknown labels an answer or a refusal names
ID_CHARS_SHOWN = 64  # of each request id named (ours are 32 hex digits)


@dataclasses.dataclass(frozen=True)
class LabelKey:
    """The prediction a label is for: a request id and a row of that request."""

    request_id: str
    row: int


@dataclasses.dataclass(frozen=True)
class LabelsAdded:
    """What a batch of labels matched, as ``POST /labels`` answers it."""

    labels: int  # stored: every label of the batch (a strict batch with unknowns raises)
    matched: int  # joined to a prediction in the production log or the shadow log
    unknown: int  # labels - matched
    duplicates: int  # for a (request_id, row) labelled before, or earlier in the batch
    unknown_examples: list[LabelKey]  # the first few unknown ones


def _keys(folder: Path, request_ids: list[str]) -> set[tuple[str, int]]:
    """The ``(request_id, row)`` pairs of the parts under ``folder`` for these request ids."""
    files = sorted(str(p) for p in folder.rglob("part-*.parquet")) if folder.is_dir() else []
    if not files or not request_ids:
        return set()
    table = ds.dataset(files, format="parquet").to_table(
        columns=["request_id", "row"], filter=ds.field("request_id").isin(request_ids))
    return set(zip(table["request_id"].to_pylist(), table["row"].to_pylist(), strict=True))


def _short(request_id: str) -> str:
    """A request id as answers name it: cut short, since a label's id is anything it was sent."""
    if len(request_id) <= ID_CHARS_SHOWN:
        return request_id
    return request_id[:ID_CHARS_SHOWN] + "..."


def _array(values: Any, type_: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values if values.type == type_ else values.cast(type_)
    return pa.array(values, type=type_)


def model_dir(root: Path, model_name: str) -> Path:
    return root / f"model={urllib.parse.quote(model_name, safe='')}"


def write_part(folder: Path, table: pa.Table) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{uuid.uuid4().hex}.parquet"
    tmp = folder / f".{name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, folder / name)
    return folder / name


class ShadowLog:
    def __init__(self, home: Path, flush_rows: int = 50_000) -> None:
        self.shadow_root = home / "shadow"
        self.label_root = home / "labels"
        self.production_root = home / "production"  # written by serving.production_log
        self.flush_rows = flush_rows
        self.written = 0  # records written to parts so far
        self._tables: list[pa.Table] = []
        self._lock = threading.Lock()
        self._label_lock = threading.Lock()

    def append_columns(self, columns: dict[str, Any]) -> None:
        """Append records given column-wise (one list or array per schema field)."""
        table = pa.table({f.name: _array(columns[f.name], f.type) for f in SHADOW_SCHEMA})
        with self._lock:
            self._tables.append(table)
            rows = sum(t.num_rows for t in self._tables)
        if rows >= self.flush_rows:
            self.flush()

    def flush(self) -> int:
        """Write buffered records; return how many."""
        with self._lock:
            tables, self._tables = self._tables, []
        if not tables:
            return 0
        table = pa.concat_tables(tables)
        keyed = table.append_column("_day", pc.cast(table["at"], pa.date32()))  # UTC days
        for key in keyed.select(["model_name", "_day"]).group_by(
                ["model_name", "_day"]).aggregate([]).to_pylist():
            mask = pc.and_(pc.equal(keyed["model_name"], key["model_name"]),
                           pc.equal(keyed["_day"], key["_day"]))
            day = key["_day"].isoformat()
            write_part(model_dir(self.shadow_root, key["model_name"]) / f"date={day}",
                       table.filter(mask))
        self.written += int(table.num_rows)
        return int(table.num_rows)

    def add_labels(self, model_name: str, labels: list[dict[str, Any]], *,
                   strict: bool = False) -> LabelsAdded:
        """Store labels (``request_id``, ``row``, ``label``) and say what they matched.

        Raises:
            RequestError: ``strict`` and a label matches no logged prediction of the model;
                nothing is stored then.
        """
        keys = [(str(x["request_id"]), int(x.get("row", 0))) for x in labels]
        ids = sorted({k[0] for k in keys})
        with self._label_lock:  # the duplicates count sees every batch this process stored
            logged = (_keys(model_dir(self.production_root, model_name), ids)
                      | _keys(model_dir(self.shadow_root, model_name), ids))
            unknown = [k for k in keys if k not in logged]
            if strict and unknown:
                raise RequestError(_refusal(model_name, len(keys), unknown))
            seen = _keys(model_dir(self.label_root, model_name), ids)
            duplicates = 0
            for key in keys:
                duplicates += key in seen
                seen.add(key)
            if keys:
                at = dt.datetime.now(dt.UTC)
                write_part(model_dir(self.label_root, model_name), pa.Table.from_pylist(
                    [{"request_id": k[0], "row": k[1], "label": float(x["label"]), "at": at}
                     for k, x in zip(keys, labels, strict=True)], schema=LABEL_SCHEMA))
        return LabelsAdded(labels=len(keys), matched=len(keys) - len(unknown),
                           unknown=len(unknown), duplicates=duplicates,
                           unknown_examples=[LabelKey(_short(k[0]), k[1])
                                             for k in unknown[:UNKNOWN_SHOWN]])


def _refusal(model_name: str, total: int, unknown: list[tuple[str, int]]) -> str:
    more = len(unknown) - UNKNOWN_SHOWN
    named = ", ".join(f"{_short(k[0])!r} row {k[1]}" for k in unknown[:UNKNOWN_SHOWN])
    return (f"strict: {len(unknown):,} of {total:,} labels match no logged prediction of "
            f"{model_name!r}: {named}{f' and {more:,} more' if more > 0 else ''}; nothing was "
            "stored. Predictions are logged by the server that answered them (the --log-sample "
            "fraction of requests, and the --shadow-sample fraction scored by a shadow "
            "version); check the request ids, or send the labels without strict to store them "
            "anyway")


def read_labels(path: str, data_roots: Sequence[str]) -> list[dict[str, Any]]:
    """Label rows from parquet under the data roots (``request_id``, ``label``, ``row``).

    Raises:
        DataAccessDenied: the path lies outside every data root.
        DataError: no such file, or a column is missing or unusable.
    """
    from modelyard.errors import DataError
    from modelyard.runtime import data as datamod

    source = datamod.resolve_source(path, data_roots)
    dataset = datamod.open_dataset(source)
    names = set(dataset.schema.names)
    missing = [c for c in ("request_id", "label") if c not in names]
    if missing:
        raise DataError(f"labels file {source.display} has no column {missing[0]!r}; it needs "
                        "request_id and label (and optionally row, default 0)")
    table = datamod.scan(dataset, [c for c in ("request_id", "row", "label") if c in names],
                         None)
    try:
        labels = pc.cast(table["label"], pa.float64()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"labels file {source.display}: column 'label' is not numeric or "
                        f"boolean ({str(exc).splitlines()[0]})") from None
    ids = pc.cast(table["request_id"], pa.string()).to_pylist()
    try:  # the label log's row column is int32 (a row of a predict request)
        rows = (pc.cast(table["row"], pa.int32()).to_pylist() if "row" in names
                else [0] * len(ids))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"labels file {source.display}: column 'row' is not whole numbers "
                        f"of at most 32 bits ({str(exc).splitlines()[0]})") from None
    if any(r is not None and r < 0 for r in rows):
        raise DataError(f"labels file {source.display}: column 'row' holds a negative row")
    if any(i is None for i in ids) or any(v is None for v in labels):
        raise DataError(f"labels file {source.display} has empty request_id or label values")
    return [{"request_id": i, "row": int(r or 0), "label": v}
            for i, r, v in zip(ids, rows, labels, strict=True)]
