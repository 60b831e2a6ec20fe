"""The production log's writer on its own: requests converted in slices between writes, one
part per (model, day) and write, and versions whose features differ read back together."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from modelyard.serving.loading import VersionRef
from modelyard.serving.production_log import ProductionLog, Served, read_window
from modelyard.serving.schema import row_schema


def _served(version: int, arrow_type: str, values: list[object]) -> Served:
    ref = VersionRef("fraud", "*", version, f"sha256:{version:064x}", None, ("x",), ())
    schema = row_schema(f"version {version}", ["x"], {"x": arrow_type}, [])
    return Served(f"r{version}-{values[0]}", time.time(), None, "*", ref, schema,
                  [{"x": v} for v in values], [0.5] * len(values))


def test_slices_converted_between_writes_are_written_as_one_part(tmp_path: Path) -> None:
    plog = ProductionLog(tmp_path, max_rows=100)
    plog.submit(_served(1, "double", [1.5, 2.5]))
    plog._tick()  # converted, not yet written: still counted against the buffer
    plog.submit(_served(1, "double", [3.5]))
    assert (plog.buffered, plog.logged) == (3, 0)
    assert plog.flush() == 3
    assert (plog.buffered, plog.logged, plog.failed) == (0, 3, 0)
    parts = list((tmp_path / "production").rglob("part-*.parquet"))
    assert len(parts) == 1
    now = dt.datetime.now(dt.UTC)
    table = read_window(tmp_path, "fraud", now - dt.timedelta(hours=1), now)
    assert table is not None
    assert sorted(table.column("feature.x").to_pylist()) == [1.5, 2.5, 3.5]


def test_a_feature_whose_type_changed_between_slices_reads_back_as_text(tmp_path: Path
                                                                         ) -> None:
    plog = ProductionLog(tmp_path, max_rows=100)
    plog.submit(_served(1, "double", [1.5]))
    plog._tick()
    plog.submit(_served(2, "string", ["a"]))
    assert plog.flush() == 2
    now = dt.datetime.now(dt.UTC)
    table = read_window(tmp_path, "fraud", now - dt.timedelta(hours=1), now)
    assert table is not None
    assert sorted(table.column("feature.x").to_pylist()) == ["1.5", "a"]
    assert sorted(table.column("version").to_pylist()) == [1, 2]
