"""Find and read the request's data: resolve its path inside the data roots, open the files as
one dataset, scan only the needed columns of the rows that pass a filter expression, and
fingerprint what was read.

The filter expression comes from :mod:`~modelyard.runtime.filters`, the train/holdout split is
:mod:`~modelyard.runtime.holdout`'s. Everything here is pyarrow until :func:`to_frame` hands a split
to the workflow as pandas. pyarrow and fsspec errors are translated into :class:`DataError` with a
message that names the path or the column, and says what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from modelyard.artifacts import protocols
from modelyard.errors import DataAccessDenied, DataError
from modelyard.request.models import TrainRequest

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

    A path outside the roots is refused with the same message whether or not anything exists
    there, naming neither the roots nor where the path leads, so the answer cannot be used to
    probe the server's files.

    Raises:
        DataAccessDenied: the path lies outside every data root.
        DataError: nothing exists there, no parquet file matches, or the path holds a NUL
            character.
    """
    if "\x00" in path:
        raise DataError(f"data path {path!r} holds a NUL character, which no file name can "
                        "hold; check the path")
    if "://" in path:
        return _resolve_url(path, data_roots)
    local_roots = [r for r in data_roots if "://" not in r]
    real_roots = _real(local_roots)
    candidates = (
        [Path(path)] if os.path.isabs(path) else [Path(root) / path for root in local_roots]
    )
    outside = False
    for candidate in candidates:
        # First from the path alone ('..' resolved as text), so nothing outside the roots is
        # ever looked at; then realpath resolves symlinks, which must not lead out either.
        if not _inside_any(os.path.abspath(candidate), [*local_roots, *real_roots]):
            outside = True
            continue
        real = os.path.realpath(candidate)
        if not _inside_any(real, real_roots):
            outside = True
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
    if outside:
        raise DataAccessDenied(
            f"data path {path} is outside the configured data roots; move the data under one "
            "of them or start the server with --data-root")
    where = ", ".join(local_roots) if not os.path.isabs(path) else path
    raise DataError(
        f"data path {path} does not exist (looked in: {where}); check data.features.path"
    )


def _resolve_url(url: str, data_roots: Sequence[str]) -> Source:
    denied = DataAccessDenied(
        f"data URL {url} is outside the configured data roots; add its bucket or prefix with "
        "--data-root"
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
                f"data path {path}: the file {file} is a link that leads outside the data "
                "roots; remove the link or copy the data under a root"
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


# Below this many bytes of parquet a scan runs on the calling thread: handing a small file to
# Arrow's thread pool costs more than the decoding it spreads (a fleet tenant's partition is
# small). Arrow IPC files have nothing to decode: read on the calling thread whatever their size.
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
    forked worker, starting Arrow's thread pool costs more than converting a small table)."""
    return table.to_pandas(use_threads=table.nbytes >= THREADED_SCAN_MIN_BYTES)


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
