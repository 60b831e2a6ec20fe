"""A fleet's plan, in-process: which tenants qualify, and each partition holds exactly its rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from modelyard.artifacts import ArtifactStore
from modelyard.request import parse_request
from modelyard.runtime import fleet
from modelyard.synthetic import example_request


def _request(**tenants: Any) -> Any:
    req = example_request("x.parquet")
    req["data"]["features"]["names"] += ["merchant_id", "segment"]  # type: ignore[index]
    req["filters"] = []
    req["tenants"] = {"column": "merchant_id", "min_training_rows": 3, **tenants}
    return parse_request(req)


def _table() -> pa.Table:
    """Tenants interleaved and out of name order; integer ids (the plan makes them text)."""
    rng = np.random.default_rng(7)
    merchants = [30, 4, 30, 200, 4, 30, 7, 200, 30, 4, 200, 30, 4, 200, 200, 30, 4, 4, 7,
                 9, 9, 9, 9]
    n = len(merchants)
    train = dt.datetime(2018, 6, 1)
    holdout = dt.datetime(2018, 11, 1)
    dates = [holdout if i % 4 == 3 else train + dt.timedelta(days=i) for i in range(n)]
    fraud = [bool(i % 2) for i in range(n)]
    fraud[20] = fraud[21] = fraud[22] = False  # merchant 9: one class in its training rows
    return pa.table({
        "row": np.arange(n),
        "merchant_id": pa.array(merchants, pa.int64()),
        "segment": ["EU" if m in (4, 30, 9) else "US" for m in merchants],
        "created_at": pa.array(dates, pa.timestamp("us")),
        "has_fraud_dispute": fraud,
        "charge_amount": rng.normal(size=n),
    })


def test_each_partition_holds_exactly_its_tenant_s_rows_in_their_order(tmp_path: Path) -> None:
    table = _table()
    plan = fleet.plan(_request(segment_column="segment"), table, ArtifactStore(str(tmp_path)),
                      "p1")
    entries = {e.tenant: e for e in plan.tenants}
    assert [e.tenant for e in plan.tenants] == ["200", "30", "4", "7", "9"]  # sorted as text
    merchants = table["merchant_id"].to_pylist()
    for tenant, entry in entries.items():
        rows = [i for i, m in enumerate(merchants) if str(m) == tenant]
        assert entry.rows == len(rows)
        if not entry.qualifies:
            assert entry.path is None
            continue
        assert entry.path is not None
        part = ds.dataset(entry.path.removeprefix("file://"), format="ipc").to_table()
        assert part["row"].to_pylist() == rows  # exactly its rows, in the source's order
        assert set(part["merchant_id"].to_pylist()) == {tenant}  # written as text
    assert entries["30"].qualifies and entries["200"].qualifies
    assert entries["200"].segment == "US" and entries["4"].segment == "EU"
    assert plan.segments == ["EU", "US"]
    assert entries["4"].reason == "no holdout rows to evaluate a model on"
    assert entries["9"].reason == (
        "label 'has_fraud_dispute' has a single value in its training rows")
    assert entries["7"].reason.startswith("too few training rows (2 < min_training_rows 3)")
    assert entries["30"].train_rows + entries["30"].holdout_rows == entries["30"].rows


def test_an_include_list_keeps_its_tenants_and_names_the_missing_one(tmp_path: Path) -> None:
    plan = fleet.plan(_request(include=["30", "999"]), _table(), ArtifactStore(str(tmp_path)),
                      "p2")
    entries = {e.tenant: e for e in plan.tenants}
    assert set(entries) == {"30", "999"}
    assert entries["30"].qualifies
    assert entries["999"].reason == "no rows for this tenant after the filters"
    partitions = list((tmp_path / "fleets" / "p2" / "tenants").iterdir())
    assert len(partitions) == 1


def test_partitions_are_reported_in_chunks_biggest_first_each_whole_when_reported(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sizes = [int(s) for s in rng.integers(20, 400, size=120)]
    merchants = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(merchants)
    n = len(merchants)
    table = pa.table({
        "row": np.arange(n),
        "merchant_id": pa.array(merchants, pa.int64()),
        "segment": np.where(merchants % 2 == 0, "EU", "US"),
        "created_at": pa.array([dt.datetime(2018, 6, 1) if i % 4 else dt.datetime(2018, 11, 1)
                                for i in range(n)], pa.timestamp("us")),
        "has_fraud_dispute": np.arange(n) % 3 == 0,
        "charge_amount": rng.normal(size=n),
    })
    chunks: list[list[str]] = []

    def ready(tenants: list[Any], segments: list[str]) -> None:
        assert segments == ["EU", "US"]  # known before the first partition is written
        for t in tenants:  # every reported partition is complete already
            part = ds.dataset(t.path.removeprefix("file://"), format="ipc").to_table()
            assert part.num_rows == t.rows and set(part["merchant_id"].to_pylist()) == {t.tenant}
        chunks.append([t.tenant for t in tenants])

    plan = fleet.plan(_request(min_training_rows=100, segment_column="segment"), table,
                      ArtifactStore(str(tmp_path)), "p3", ready=ready)
    rows = {t.tenant: t.rows for t in plan.tenants}
    qualifying = [t.tenant for t in plan.tenants if t.qualifies]
    reported = [t for chunk in chunks for t in chunk]
    assert sorted(reported) == sorted(qualifying) and len(set(reported)) == len(reported)
    assert [rows[t] for t in reported] == sorted((rows[t] for t in reported), reverse=True)
    assert 2 <= len(chunks) <= 5
    first = sum(rows[t] for t in chunks[0])
    assert first - rows[chunks[0][-1]] < sum(rows[t] for t in qualifying) / 16
