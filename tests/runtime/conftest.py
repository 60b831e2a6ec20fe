"""Fixtures of the runtime tests: real parquet files on disk, a real artefact folder, the worker run
in-process, and fsspec filesystems (an in-memory bucket, a local one that counts the bytes read);
and the helpers the data, filter and holdout tests share (write, ids_table, make_filter, read_ids).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem
from threadpoolctl import threadpool_limits

from modelyard.protocol.events import WorkerEvent, WorkerSpec
from modelyard.request.models import Filter
from modelyard.runtime import data as datamod
from modelyard.runtime.filters import build_filter
from modelyard.runtime.training import execute
from modelyard.synthetic import example_request, payments_table, write_payments

WORKFLOWS_FILE = Path(__file__).with_name("workflows_for_tests.py")
PAYMENTS_ROWS = 5_000


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data root for the worker tests (read-only: tests that change files use tmp_path).

    payments.parquet   the synthetic payments, 5,000 rows of 2018
    bands.parquet      the same with a three-class text label, amount_band (low/mid/high)
    notes.parquet      text that is not parquet at all
    empty.parquet      the payments schema with no rows
    """
    root = tmp_path_factory.mktemp("data-root")
    write_payments(root / "payments.parquet", rows=PAYMENTS_ROWS, merchants=100, seed=0)
    table = payments_table(PAYMENTS_ROWS, 100, seed=1)
    amount = table["charge_amount"].to_numpy()
    band = np.where(amount < 20, "low", np.where(amount < 80, "mid", "high"))
    pq.write_table(table.append_column("amount_band", pa.array(band)), root / "bands.parquet")
    (root / "notes.parquet").write_text("charge_id,amount\n1,2.5\n")
    pq.write_table(table.slice(0, 0), root / "empty.parquet")
    return root


@pytest.fixture(scope="session")
def payments(data_root: Path) -> pa.Table:
    """The payments file as written, for computing expectations directly."""
    return pq.read_table(data_root / "payments.parquet")


@pytest.fixture
def fraud_request() -> dict[str, Any]:
    """The demo request on payments.parquet, trained by the fast ``Logistic`` test workflow."""
    req = example_request("payments.parquet", workflow_name="Logistic", custom_params={})
    return copy.deepcopy(req)


@pytest.fixture
def artifact_root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


RunWorker = Callable[..., list[WorkerEvent]]


@pytest.fixture
def run_worker(data_root: Path, artifact_root: Path) -> RunWorker:
    """Run ``execute`` in this process on a request; return every event it reported, in order."""

    def run(
        request: dict[str, Any],
        *,
        job_id: str | None = None,
        data_roots: tuple[str, ...] | None = None,
        workflow_modules: tuple[str, ...] = (str(WORKFLOWS_FILE),),
        workflow_packages: tuple[str, ...] = (),
    ) -> list[WorkerEvent]:
        spec = WorkerSpec(
            job_id=job_id or f"job-{uuid.uuid4().hex[:12]}",
            request=request,
            data_roots=data_roots if data_roots is not None else (str(data_root),),
            artifact_root=str(artifact_root),
            workflow_modules=workflow_modules,
            workflow_packages=workflow_packages,
        )
        events: list[WorkerEvent] = []
        # One OpenMP/BLAS thread: on a loaded two-core CI box the threads of a histogram
        # gradient boosting fit spin at barriers and a 0.05 s fit takes seconds.
        with threadpool_limits(limits=1):
            execute(spec, events.append)
        return events

    return run


class CountingFileSystem(LocalFileSystem):  # type: ignore[misc]
    """The local filesystem under ``counting://``, counting every byte read through it."""

    protocol = "counting"
    bytes_read = 0

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, str) and path.startswith("counting://"):
            path = path[len("counting://") :]
        return super()._strip_protocol(path)

    def _open(self, path: Any, mode: str = "rb", **kwargs: Any) -> Any:
        fh = super()._open(path, mode, **kwargs)
        if "r" in mode:
            read, readinto = fh.read, fh.readinto

            def counted_read(n: int = -1) -> bytes:
                data: bytes = read(n)
                CountingFileSystem.bytes_read += len(data)
                return data

            def counted_readinto(buffer: Any) -> int:
                n: int = readinto(buffer)
                CountingFileSystem.bytes_read += n
                return n

            fh.read, fh.readinto = counted_read, counted_readinto
        return fh


@pytest.fixture
def counting_fs() -> type[CountingFileSystem]:
    """Register ``counting://``; read ``CountingFileSystem.bytes_read`` after a scan."""
    fsspec.register_implementation("counting", CountingFileSystem, clobber=True)
    CountingFileSystem.bytes_read = 0
    return CountingFileSystem


@pytest.fixture
def memory_bucket() -> Iterator[str]:
    """A fresh bucket in fsspec's (process-global) memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    bucket = f"bucket-{uuid.uuid4().hex[:8]}"
    yield bucket
    if fs.exists(f"/{bucket}"):
        fs.rm(f"/{bucket}", recursive=True)


# --------------------------------------------------------------------------------------------
# helpers of the data, filter and holdout tests


def write(path: Path, table: pa.Table | pd.DataFrame, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(table, path, **kwargs)
    return path


def ids_table(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(np.arange(start, start + n, dtype=np.int64))})


def make_filter(column: str, predicate: str, value: dict[str, Any] | None) -> Filter:
    body: dict[str, Any] = {"feature_name": column, "predicate": predicate}
    if value is not None:
        body["feature_value"] = value
    return Filter.model_validate(body)


def read_ids(source: datamod.Source, filters: list[Filter]) -> set[int]:
    dataset = datamod.open_dataset(source)
    table = datamod.scan(dataset, ["id"], build_filter(filters, dataset.schema))
    return set(table["id"].to_pylist())
