"""Read the request's data: resolve the path inside the data roots, scan parquet with filters pushed
down and only the needed columns projected, and split train/holdout.

Everything here is pyarrow until the very end, where the two splits become pandas frames for the
workflow. pyarrow and fsspec errors are translated into :class:`DataError` with a message that names
the path, the column or the filter, and says what to do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from modelyard.artifacts import protocols
from modelyard.errors import DataAccessDenied, DataError
from modelyard.request.models import Filter, Predicate, TrainRequest

if TYPE_CHECKING:
    import pandas as pd

_GLOB_CHARS = "*?["


@dataclasses.dataclass
class Source:
    """A resolved data location: the filesystem, the files, and what to call it in messages.

    ``base_dir`` is the folder a folder or glob path names; hive partition columns are read from
    the paths below it. It is ``None`` for a single named file.
    """

    display: str
    filesystem: pafs.FileSystem
    files: list[str]
    fsspec_fs: Any
    base_dir: str | None = None


def resolve_source(path: str, data_roots: Sequence[str]) -> Source:
    """Find the parquet files ``path`` names (a file, a folder or a glob) inside the data roots.

    Raises:
        DataAccessDenied: the path lies outside every data root.
        DataError: nothing exists there, or no parquet file matches.
    """
    if "://" in path:
        return _resolve_url(path, data_roots)
    local_roots = [r for r in data_roots if "://" not in r]
    candidates = (
        [Path(path)] if os.path.isabs(path) else [Path(root) / path for root in local_roots]
    )
    denied = DataAccessDenied(
        f"data path {path} is outside the configured data roots {list(data_roots)}; "
        "move the data under one of them or start the server with --data-root"
    )
    escaped = False
    for candidate in candidates:
        # realpath resolves '..' and symlinks, so neither can step outside a root.
        real = os.path.realpath(candidate)
        if not _inside_any(real, _real(local_roots)):
            if os.path.isabs(path):
                raise denied
            escaped = escaped or os.path.exists(real)
            continue
        if _has_glob(path):
            files = sorted(
                f for f in _glob_local(real) if f.endswith(".parquet") or f.endswith(".parq")
            )
            if files:
                _check_files_inside(path, files, local_roots)
                base = os.path.dirname(real[: _glob_start(real)])
                return Source(path, pafs.LocalFileSystem(), files, fsspec.filesystem("file"), base)
        elif os.path.isfile(real):
            return Source(path, pafs.LocalFileSystem(), [real], fsspec.filesystem("file"))
        elif os.path.isdir(real):
            files = _parquet_files_in(real)
            if not files:
                raise DataError(f"data folder {path} holds no .parquet files")
            _check_files_inside(path, files, local_roots)
            return Source(path, pafs.LocalFileSystem(), files, fsspec.filesystem("file"), real)
    if escaped:
        raise denied
    where = ", ".join(local_roots) if not os.path.isabs(path) else path
    raise DataError(
        f"data path {path} does not exist (looked in: {where}); check data.features.path"
    )


def _resolve_url(url: str, data_roots: Sequence[str]) -> Source:
    denied = DataAccessDenied(
        f"data URL {url} is outside the configured data roots {list(data_roots)}; "
        "add its bucket or prefix with --data-root"
    )
    protocol = fsspec.core.split_protocol(url)[0]
    url_roots = [
        r for r in data_roots if "://" in r and fsspec.core.split_protocol(r)[0] == protocol
    ]
    if not url_roots:
        raise denied
    try:
        fs, fs_path = fsspec.core.url_to_fs(url)
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"cannot open data URL {url}: {exc}") from None
    local = "file" in protocols(fs)
    # '..' (and on a local disk, a symlink) is resolved before comparing whole path segments.
    fs_path = _normalise(fs_path, local)
    roots = [_normalise(fs._strip_protocol(r), local) for r in url_roots]
    if not _inside_any(fs_path, roots, sep="/"):
        raise denied
    base: str | None = None
    try:
        if _has_glob(fs_path):
            files = sorted(fs.glob(fs_path))
            base = posixpath.dirname(fs_path[: _glob_start(fs_path)])
        elif fs.isdir(fs_path):
            files = sorted(p for p in fs.find(fs_path) if p.endswith((".parquet", ".parq")))
            base = fs_path
        elif fs.exists(fs_path):
            files = [fs_path]
        else:
            files = []
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot open data URL {url}: {exc}") from None
    if not files:
        raise DataError(f"data URL {url} names no parquet file; check data.features.path")
    if local:
        _check_files_inside(url, files, roots)
    return Source(url, pafs.PyFileSystem(pafs.FSSpecHandler(fs)), files, fs, base)


def _normalise(path: str, local: bool) -> str:
    return os.path.realpath(path) if local else posixpath.normpath(path)


def _inside_any(real: str, roots: Sequence[str], sep: str = os.sep) -> bool:
    """Whether ``real`` is one of ``roots`` or below one, comparing whole path segments.

    Both sides must be normalised already (realpath on a local disk), or '..' could escape.
    """
    return any(real == root or real.startswith(root.rstrip(sep) + sep) for root in roots)


def _real(roots: Sequence[str]) -> list[str]:
    return [os.path.realpath(root) for root in roots]


def _check_files_inside(path: str, files: Sequence[str], roots: Sequence[str]) -> None:
    """Refuse a folder or glob if any file it finds resolves outside the roots (a symlink)."""
    for file in files:
        real = os.path.realpath(file)
        if not _inside_any(real, _real(roots)):
            raise DataAccessDenied(
                f"data path {path}: the file {file} resolves to {real}, outside the data roots "
                f"{list(roots)}; remove the link or copy the data under a root"
            )


def _has_glob(path: str) -> bool:
    return any(c in path for c in _GLOB_CHARS)


def _glob_start(path: str) -> int:
    return min(i for i in (path.find(c) for c in _GLOB_CHARS) if i >= 0)


def _glob_local(pattern: str) -> list[str]:
    import glob

    return [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]


def _parquet_files_in(folder: str) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        out.extend(
            os.path.join(dirpath, f)
            for f in filenames
            if f.endswith((".parquet", ".parq")) and not f.startswith((".", "_"))
        )
    return sorted(out)


# Arrow's own file format, read when every file has one of these endings (a fleet's plan
# writes its tenants' partitions so); anything else is parquet.
IPC_SUFFIXES = (".arrow", ".feather", ".ipc")


def file_format(files: Sequence[str]) -> str:
    return "ipc" if files and all(f.endswith(IPC_SUFFIXES) for f in files) else "parquet"


def open_dataset(source: Source) -> ds.Dataset:
    """Open the files as one dataset: parquet, or Arrow IPC files (see :data:`IPC_SUFFIXES`).

    Hive partition columns (``country=US/``) are read from the paths below a folder or glob's base,
    however many partitions it holds; a single named file has none.
    """
    fmt = file_format(source.files)
    try:
        return ds.dataset(
            source.files,
            format=fmt,
            filesystem=source.filesystem,
            partitioning="hive" if source.base_dir is not None else None,
            partition_base_dir=source.base_dir,
        )
    except pa.ArrowInvalid as exc:
        kind = "an Arrow IPC file" if fmt == "ipc" else "parquet"
        raise DataError(
            f"{source.display} is not readable as {kind}: {_first_line(exc)}; "
            "Modelyard reads parquet files (write them with pandas.DataFrame.to_parquet)"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {source.display}: {_first_line(exc)}") from None


def check_columns(dataset: ds.Dataset, request: TrainRequest, source: Source) -> None:
    """Fail early, naming the column and the field that asked for it, if a column is missing."""
    have = set(dataset.schema.names)
    wanted: list[tuple[str, str]] = [(c, "data.features.names") for c in request.columns()]
    wanted += [(f.feature_name, "filters") for f in request.filters]
    for column, field in wanted:
        if column not in have:
            raise DataError(
                f"{field}: no column {column!r} in {source.display} "
                f"(columns: {', '.join(dataset.schema.names)})"
            )


def build_filter(filters: Sequence[Filter], schema: pa.Schema) -> pc.Expression | None:
    """AND the request's filters into one pyarrow expression the scan pushes down."""
    expr: pc.Expression | None = None
    for f in filters:
        one = _filter_expression(f, schema.field(f.feature_name))
        expr = one if expr is None else expr & one
    return expr


def _filter_expression(f: Filter, field: pa.Field) -> pc.Expression:
    col = pc.field(f.feature_name)
    p = f.predicate
    if p is Predicate.IsNull:
        return col.is_null()
    if p is Predicate.IsNotNull:
        return col.is_valid()
    value = f.feature_value
    if value is None:  # the request model already refuses this; keep the message if bypassed
        raise DataError(f"filter on {f.feature_name!r}: predicate {p.value} needs a feature_value")
    on_integers = pa.types.is_integer(_value_type(field))
    if p in (Predicate.IsIn, Predicate.NotIn):
        raw = value.values()
        if on_integers:  # no integer equals 2.5: such a value can match nothing
            raw = [v for v in raw if not _fractional(v)]
        values = pa.array([_coerce(v, field, f) for v in raw], type=_value_type(field))
        isin = col.isin(values)
        # A null is not "not in" the list, as it is not "not equal" to a value: drop it.
        return isin if p is Predicate.IsIn else ~isin & col.is_valid()
    if p is Predicate.Between:
        low, high = value.min, value.max
        if on_integers:  # between 9.5 and 20.5 is between 10 and 20
            low = math.ceil(low) if _fractional(low) else low
            high = math.floor(high) if _fractional(high) else high
        return (col >= scalar_for(low, field, f)) & (col <= scalar_for(high, field, f))
    if on_integers and _fractional(value.scalar()):
        return _fractional_on_integers(p, value.scalar(), col, field, f)
    v = scalar_for(value.scalar(), field, f)
    ops = {
        Predicate.Equals: col == v,
        Predicate.NotEquals: col != v,
        Predicate.GreaterThan: col > v,
        Predicate.GreaterThanOrEqual: col >= v,
        Predicate.LessThan: col < v,
        Predicate.LessThanOrEqual: col <= v,
    }
    return ops[p]


def _fractional(value: Any) -> TypeGuard[float]:
    return isinstance(value, float) and math.isfinite(value) and not value.is_integer()


def _fractional_on_integers(
    p: Predicate, value: float, col: pc.Expression, field: pa.Field, f: Filter
) -> pc.Expression:
    """Compare an integer column with a number that is not whole, exactly and still in integers
    (so row-group statistics keep pruning the scan): > 99.5 is >= 100, <= 99.5 is <= 99."""
    if p is Predicate.Equals:
        return col.is_valid() & pc.scalar(False)  # no integer equals 99.5
    if p is Predicate.NotEquals:
        return col.is_valid()
    if p in (Predicate.GreaterThan, Predicate.GreaterThanOrEqual):
        return col >= scalar_for(math.ceil(value), field, f)
    return col <= scalar_for(math.floor(value), field, f)


def _value_type(field: pa.Field) -> pa.DataType:
    t = field.type
    return t.value_type if pa.types.is_dictionary(t) else t


def scalar_for(value: Any, field: pa.Field, f: Filter | None = None) -> pa.Scalar:
    """``value`` as a pyarrow scalar of ``field``'s type (for comparisons pushed into a scan)."""
    return pa.scalar(_coerce(value, field, f), type=_value_type(field))


def _coerce(value: Any, field: pa.Field, f: Filter | None) -> Any:
    """Turn a request value into a Python value of the column's type, or say why it cannot be."""
    t = _value_type(field)
    what = f"filter on {field.name!r}" if f is not None else f"column {field.name!r}"
    try:
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            when = value
            if isinstance(when, str):
                when = dt.datetime.fromisoformat(when)
            if isinstance(when, dt.datetime) and pa.types.is_date(t):
                return when.date()
            if isinstance(when, dt.date) and not isinstance(when, dt.datetime):
                when = dt.datetime(when.year, when.month, when.day)
            if not isinstance(when, dt.datetime):
                raise TypeError
            if pa.types.is_timestamp(t) and t.tz is not None and when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            if pa.types.is_timestamp(t) and t.tz is None and when.tzinfo is not None:
                when = when.astimezone(dt.UTC).replace(tzinfo=None)
            return when
        if pa.types.is_boolean(t):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if pa.types.is_integer(t):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if pa.types.is_floating(t) or pa.types.is_decimal(t):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            return float(value)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if not isinstance(value, str):
                raise TypeError
            return value
        return pa.scalar(value).cast(t).as_py()
    except (TypeError, ValueError, OverflowError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(
            f"{what}: the value {value!r} does not fit the column's type {t}; "
            f"use a {_value_kind(t)} value"
        ) from None


def _value_kind(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "date_val (ISO date) or min/max dates"
    if pa.types.is_boolean(t):
        return "bool_val"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number_val / number_vals"
    return "string_val / string_vals"


# Below this many bytes of parquet a scan runs on the calling thread: handing a small file to
# Arrow's thread pool costs more than it saves (0.45 ms of a 1.2 ms scan of a fleet tenant).
# Arrow IPC files have nothing to decode: read on the calling thread whatever their size.
THREADED_SCAN_MIN_BYTES = 1 << 20


def scan(
    dataset: ds.Dataset, columns: Sequence[str], filter_expr: pc.Expression | None,
    size: int | None = None,
) -> pa.Table:
    """Read only ``columns`` of the rows that pass ``filter_expr`` (pushed into the scan);
    ``size``: the files' bytes, if known (small data is read without the thread pool)."""
    threads = not isinstance(dataset.format, ds.IpcFileFormat) and (
        size is None or size >= THREADED_SCAN_MIN_BYTES)
    try:
        return dataset.to_table(columns=list(columns), filter=filter_expr, use_threads=threads)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DataError(f"cannot apply the filters to the data: {_first_line(exc)}") from None
    except OSError as exc:
        raise DataError(f"error while reading the data: {_first_line(exc)}") from None


def to_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as a pandas DataFrame; a small one converted on the calling thread (in a newly
    forked worker, Arrow's thread pool cost ~3 ms of a tiny job's two conversions, measured)."""
    return table.to_pandas(use_threads=table.nbytes >= THREADED_SCAN_MIN_BYTES)


def explain_empty_filter(
    dataset: ds.Dataset, filters: Sequence[Filter], total_rows: int, display: str
) -> str:
    """Say which filter left no rows (one count per filter; only on the error path)."""
    parts = []
    for f in filters:
        expr = _filter_expression(f, dataset.schema.field(f.feature_name))
        n = dataset.count_rows(filter=expr)
        value = f.feature_value.model_dump(exclude_none=True) if f.feature_value else ""
        parts.append(f"{f.feature_name} {f.predicate.value} {value} keeps {n:,}")
    return (
        f"the filters leave no rows of the {total_rows:,} in {display} ("
        + "; ".join(parts)
        + "); loosen the filters"
    )


def date_bound(table_or_schema: pa.Schema, column: str) -> pa.DataType:
    t = table_or_schema.field(column).type
    if not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
        raise DataError(
            f"holdout_sampling.date_range_sampling.date_column {column!r} has type {t}, "
            "not a date or timestamp; store it as a parquet timestamp or date"
        )
    return t


def split_date_range(
    table: pa.Table, column: str, start: dt.date, end: dt.date
) -> tuple[pa.Table, pa.Table]:
    """Holdout is ``[start, end)``; training is everything before ``start`` (no future leakage)."""
    field = table.schema.field(column)
    lo = scalar_for(start, field, None)
    hi = scalar_for(end, field, None)
    col = table[column]
    holdout_mask = pc.and_(pc.greater_equal(col, lo), pc.less(col, hi))
    train_mask = pc.less(col, lo)
    return table.filter(train_mask), table.filter(holdout_mask)


def split_random(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """A seeded Bernoulli draw per row: the same data and seed always give the same split."""
    mask = np.random.default_rng(seed).random(table.num_rows) < fraction
    holdout_mask = pa.array(mask)
    return table.filter(pc.invert(holdout_mask)), table.filter(holdout_mask)


def date_span(table: pa.Table, column: str) -> str:
    if table.num_rows == 0:
        return "no rows"
    mm = pc.min_max(table[column])
    return f"{mm['min'].as_py()} to {mm['max'].as_py()}"


def fingerprint(source: Source, dataset: ds.Dataset) -> dict[str, Any]:
    """What data the job read: every file's size and modification time, and parquet footers.

    The digest changes when any file is added, removed, rewritten or resized.
    """
    files = []
    digest = hashlib.sha256()
    fragments = {f.path: f for f in dataset.get_fragments()} if len(source.files) <= 1000 else {}
    rows: int | None = 0
    for path in source.files:
        try:
            info = source.fsspec_fs.info(path)
        except OSError:
            info = {}
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
        entry: dict[str, Any] = {"path": path, "size": info.get("size"), "mtime": str(mtime)}
        frag = fragments.get(path)
        if isinstance(frag, ds.ParquetFileFragment):
            md = frag.metadata
            entry.update(
                num_rows=md.num_rows, row_groups=md.num_row_groups, created_by=md.created_by
            )
            rows = rows + md.num_rows if rows is not None else None
        else:
            rows = None  # no parquet footer (an Arrow IPC file, or not read): count them
        files.append(entry)
        digest.update(repr(sorted(entry.items())).encode())
    return {
        "path": source.display,
        "files": files[:1000],
        "file_count": len(source.files),
        "total_bytes": sum(f["size"] or 0 for f in files),
        "total_rows": rows,  # from the footers; None if a file's was not read
        "schema": {f.name: str(f.type) for f in dataset.schema},
        "digest": "sha256:" + digest.hexdigest(),
    }


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
