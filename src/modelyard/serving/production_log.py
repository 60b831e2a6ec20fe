"""The production log: a sample of served rows, with their features, score and version.

What monitoring reads (drift, decay) and what labels join to. The request path only appends a
reference to the request's rows and scores to a bounded buffer (``--log-buffer-rows`` rows; a
request that does not fit is dropped and counted). A background thread turns what is buffered
into Arrow tables every :data:`CONVERT_EVERY_S` and writes them every :data:`FLUSH_EVERY_S` as
parquet parts, partitioned by model and day. Converting rows of Python values holds the GIL,
much of it inside single C calls the interpreter cannot interrupt; in small slices the request
path waits for each at most briefly, where one conversion a second of everything held all
requests back at once::

    HOME/production/model=<name>/date=<YYYY-MM-DD>/part-<uuid>.parquet

each written under a temporary name and renamed (:func:`~modelyard.serving.shadow_log.write_part`).
A part holds one row per served row: ``request_id``, ``row``, ``at``, ``model_name``, ``tenant``
(as asked, null for none), ``served_by_tenant``, ``version``, ``model_id``, ``score`` (one per
row: the positive class's, the last class's), ``experiment`` and ``arm`` (the running
experiment's arm that answered; null for none) and each feature as ``feature.<name>``, typed by
the version's training schema (numbers as doubles, booleans, text). ``--log-sample`` is the
fraction of requests logged (all their rows or none).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import operator
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from modelyard.serving.batching import Rows, last_column
from modelyard.serving.loading import VersionRef
from modelyard.serving.schema import RowSchema
from modelyard.serving.shadow_log import model_dir, write_part
from modelyard.ticker import Ticker

log = logging.getLogger("modelyard.serving")
FLUSH_EVERY_S = 1.0
CONVERT_EVERY_S = 0.1
FEATURE_PREFIX = "feature."
META_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("row", pa.int32()), ("at", pa.timestamp("us", tz="UTC")),
    ("model_name", pa.string()), ("tenant", pa.string()), ("served_by_tenant", pa.string()),
    ("version", pa.int32()), ("model_id", pa.string()), ("score", pa.float64()),
    ("experiment", pa.string()), ("arm", pa.string()),
])
_TYPES = {"number": pa.float64(), "boolean": pa.bool_(), "text": pa.string()}


@dataclasses.dataclass(frozen=True)
class Served:
    """One answered predict request, as the log keeps it (references, no copies)."""

    request_id: str
    at: float  # unix seconds
    tenant: str | None  # as asked
    served_by_tenant: str
    ref: VersionRef
    schema: RowSchema
    rows: Rows
    scores: list[Any]
    experiment: str | None = None  # the running experiment whose arm answered
    arm: str | None = None


class ProductionLog:
    """The serving side: a bounded buffer of served requests and the thread that writes it."""

    def __init__(self, home: Path, max_rows: int) -> None:
        self.root = home / "production"
        self.max_rows = max_rows
        self.logged = 0  # rows written to parts
        self.dropped = 0  # rows refused: the buffer was full
        self.failed = 0  # rows that could not be converted or written (see the server log)
        self._buffer: list[Served] = []
        self._buffered = 0  # rows held, converted or not, until written (or failed)
        self._lock = threading.Lock()
        # The writer's: converted tables by (model, day), their rows, the last write's time.
        self._write_lock = threading.Lock()
        self._tables: dict[tuple[str, dt.date], list[pa.Table]] = {}
        self._converted = 0
        self._written_at = time.monotonic()
        self._ticker = Ticker("modelyard-production-log", CONVERT_EVERY_S, self._tick, log,
                              "the production log's writer failed")

    @property
    def buffered(self) -> int:
        return self._buffered

    def submit(self, served: Served) -> None:
        """Buffer a request's rows (never blocks; drops and counts when the buffer is full)."""
        rows = len(served.rows)
        with self._lock:
            if self._buffered + rows > self.max_rows:
                self.dropped += rows
                return
            self._buffer.append(served)
            self._buffered += rows

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()
        self.flush()

    def flush(self) -> int:
        """Write what is buffered; returns the rows written."""
        with self._write_lock:  # one writer, so logged counts each row once
            self._convert()
            return self._write()

    def _tick(self) -> None:
        with self._write_lock:
            self._convert()
            if time.monotonic() - self._written_at >= FLUSH_EVERY_S:
                self._write()

    def _convert(self) -> None:
        """The buffered requests as tables, one per (model, day), kept for the next write."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return
        rows = sum(len(s.rows) for s in batch)
        try:
            tables = {key: _table(group) for key, group in _groups(batch).items()}
        except Exception:  # rows the log cannot hold must not stop serving; they are counted
            log.exception("the production log could not convert %d rows", rows)
            self._release(rows, failed=rows)
            return
        for key, table in tables.items():
            self._tables.setdefault(key, []).append(table)
        self._converted += rows

    def _write(self) -> int:
        """One part per (model, day) of the converted tables; returns the rows written."""
        self._written_at = time.monotonic()
        tables, self._tables = self._tables, {}
        rows, self._converted = self._converted, 0
        written = failed = 0
        for (model_name, day), parts in tables.items():
            folder = model_dir(self.root, model_name) / f"date={day.isoformat()}"
            for table in _joined(parts):
                try:
                    write_part(folder, table)
                except Exception:  # a full disk must not stop serving; the rows are counted
                    log.exception("the production log could not write %d rows", table.num_rows)
                    failed += table.num_rows
                else:
                    written += table.num_rows
        self._release(rows, failed=failed)
        self.logged += written
        return written

    def _release(self, rows: int, failed: int) -> None:
        self.failed += failed
        with self._lock:
            self._buffered -= rows


def _groups(batch: list[Served]) -> dict[tuple[str, dt.date], list[Served]]:
    """The batch by (model, day of serving)."""
    groups: dict[tuple[str, dt.date], list[Served]] = {}
    for served in batch:
        day = dt.datetime.fromtimestamp(served.at, dt.UTC).date()
        groups.setdefault((served.ref.model_name, day), []).append(served)
    return groups


def _joined(parts: list[pa.Table]) -> list[pa.Table]:
    """The parts as one table, columns missing from some filled with nulls; as they are when a
    feature's type differs between them (the reader casts such a feature to text)."""
    if len(parts) == 1:
        return parts
    try:
        return [pa.concat_tables(parts, promote_options="default")]
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return parts


def _table(group: list[Served]) -> pa.Table:
    sizes = [len(s.rows) for s in group]
    which = np.repeat(np.arange(len(group)), sizes)  # each row's request

    def per_request(values: list[Any], type_: pa.DataType) -> pa.Array:
        return pa.array(values, type=type_).take(which)

    columns: dict[str, Any] = {
        "request_id": per_request([s.request_id for s in group], pa.string()),
        "row": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in sizes])),
        "at": per_request([int(s.at * 1e6) for s in group], pa.int64()).cast(META_SCHEMA.field(
            "at").type),
        "model_name": per_request([s.ref.model_name for s in group], pa.string()),
        "tenant": per_request([s.tenant for s in group], pa.string()),
        "served_by_tenant": per_request([s.served_by_tenant for s in group], pa.string()),
        "version": per_request([s.ref.version for s in group], pa.int32()),
        "model_id": per_request([s.ref.model_id for s in group], pa.string()),
        "score": pa.array(np.concatenate([last_column(s.scores) for s in group])),
        "experiment": per_request([s.experiment for s in group], pa.string()),
        "arm": per_request([s.arm for s in group], pa.string()),
    }
    table = pa.table(columns, schema=META_SCHEMA)
    for name, array in _features(group).items():
        table = table.append_column(FEATURE_PREFIX + name, array)
    return table


def _features(group: list[Served]) -> dict[str, pa.Array]:
    """Each feature of the group's versions as one typed column (null where a request's version
    does not have it)."""
    kinds: dict[str, str] = {}
    for served in group:
        for column in served.schema.columns:
            kinds.setdefault(column.name, column.kind)
    has = [frozenset(s.schema.features) for s in group]
    out: dict[str, pa.Array] = {}
    for name, kind in kinds.items():
        get = operator.itemgetter(name)
        values: list[Any] = []
        for served, features in zip(group, has, strict=True):
            values += map(get, served.rows) if name in features else [None] * len(served.rows)
        out[name] = _typed(values, kind)
    return out


def _typed(values: list[Any], kind: str) -> pa.Array:
    type_ = _TYPES.get(kind)
    try:
        return pa.array(values, type=type_, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # "any" columns holding mixed values
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def read_window(home: Path, model_name: str, start: dt.datetime, end: dt.datetime
                ) -> pa.Table | None:
    """The model's logged rows with ``start <= at < end`` (None when there are none)."""
    folder = model_dir(home / "production", model_name)
    days = {(start + dt.timedelta(days=d)).date().isoformat()
            for d in range((end.date() - start.date()).days + 1)}
    files = sorted(str(p) for day in days for p in (folder / f"date={day}").glob("part-*.parquet"))
    if not files:
        return None
    table = _read(files).filter((pc.field("at") >= pa.scalar(start, META_SCHEMA.field("at").type))
                                & (pc.field("at") < pa.scalar(end, META_SCHEMA.field("at").type)))
    return table if table.num_rows else None


def _read(files: Sequence[str]) -> pa.Table:
    """The parts as one table: features that only some parts have are null in the others, and
    a feature whose type changed between versions is read part by part and cast to text."""
    try:
        schema = pa.unify_schemas([pq.read_schema(f) for f in files])
        return ds.dataset(list(files), schema=schema, format="parquet").to_table()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        tables = [pq.read_table(f) for f in files]
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            types.setdefault(field.name, set()).add(field.type)
    mixed = {name for name, seen in types.items() if len(seen) > 1}
    tables = [pa.table({name: (pc.cast(col, pa.string()) if name in mixed else col)
                        for name, col in zip(t.column_names, t.columns, strict=True)})
              for t in tables]
    return pa.concat_tables(tables, promote_options="default")


def features_of(table: pa.Table) -> list[str]:
    return [c.removeprefix(FEATURE_PREFIX) for c in table.column_names
            if c.startswith(FEATURE_PREFIX)]
