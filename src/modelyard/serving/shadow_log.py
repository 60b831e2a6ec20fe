"""The shadow log: production and shadow scores of the same rows, and labels that come later.

Records are buffered in memory and flushed as parquet parts, partitioned by model and day::

    HOME/shadow/model=<name>/date=<YYYY-MM-DD>/part-<uuid>.parquet
    HOME/labels/model=<name>/part-<uuid>.parquet

Each part is written under a temporary name and renamed, so readers never see half a file.
"""

from __future__ import annotations

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
import pyarrow.parquet as pq

SHADOW_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("row", pa.int32()), ("at", pa.timestamp("us", tz="UTC")),
    ("model_name", pa.string()), ("tenant", pa.string()), ("production_version", pa.int32()),
    ("production_score", pa.float64()), ("shadow_version", pa.int32()),
    ("shadow_score", pa.float64()),
])
LABEL_SCHEMA = pa.schema([("request_id", pa.string()), ("row", pa.int32()),
                          ("label", pa.float64()), ("at", pa.timestamp("us", tz="UTC"))])


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
        self.flush_rows = flush_rows
        self.written = 0  # records written to parts so far
        self._tables: list[pa.Table] = []
        self._lock = threading.Lock()

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

    def add_labels(self, model_name: str, labels: list[dict[str, Any]]) -> int:
        at = dt.datetime.now(dt.UTC)
        rows = [{"request_id": x["request_id"], "row": int(x.get("row", 0)),
                 "label": float(x["label"]), "at": at} for x in labels]
        if rows:
            write_part(model_dir(self.label_root, model_name),
                       pa.Table.from_pylist(rows, schema=LABEL_SCHEMA))
        return len(rows)


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
