"""The data layer on real parquet files: path resolution inside the data roots, the columns a scan
reads (checked by the bytes a selective scan reads), and the fingerprint of what was read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from modelyard.errors import DataAccessDenied, DataError
from modelyard.request.models import Filter
from modelyard.runtime import data as datamod
from modelyard.runtime.filters import build_filter

from .conftest import CountingFileSystem, ids_table, make_filter, read_ids, write

# --------------------------------------------------------------------------------------------
# path resolution


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two data roots and a folder outside both."""
    root1, root2, outside = tmp_path / "root1", tmp_path / "root2", tmp_path / "outside"
    for folder in (root1, root2, outside):
        folder.mkdir()
    write(outside / "secret.parquet", ids_table(3, start=900))
    return root1, root2, outside


def real(path: Path) -> str:
    return os.path.realpath(path)


def test_a_file_is_resolved_and_read(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "a.parquet", ids_table(5))
    source = datamod.resolve_source("a.parquet", [str(root1)])
    assert source.files == [real(root1 / "a.parquet")] and source.display == "a.parquet"
    assert read_ids(source, []) == set(range(5))
    absolute = datamod.resolve_source(str(root1 / "a.parquet"), [str(root1)])
    assert absolute.files == [real(root1 / "a.parquet")]


def test_a_folder_of_hive_partitions_reads_the_partition_column(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "events" / "country=US" / "part-0.parquet", ids_table(3))
    write(root1 / "events" / "country=CA" / "part-0.parquet", ids_table(2, start=10))
    (root1 / "events" / "_SUCCESS").write_text("")
    (root1 / "events" / "country=CA" / ".part-1.parquet.crc").write_text("")
    source = datamod.resolve_source("events", [str(root1)])
    assert len(source.files) == 2
    dataset = datamod.open_dataset(source)
    assert "country" in dataset.schema.names
    table = datamod.scan(dataset, ["id", "country"], None).sort_by("id")
    assert table.to_pydict() == {"id": [0, 1, 2, 10, 11], "country": ["US"] * 3 + ["CA"] * 2}
    only_ca = make_filter("country", "Equals", {"string_val": "CA"})
    assert read_ids(source, [only_ca]) == {10, 11}


def test_a_folder_with_one_hive_partition_reads_the_partition_column(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "events" / "country=US" / "part-0.parquet", ids_table(3))
    dataset = datamod.open_dataset(datamod.resolve_source("events", [str(root1)]))
    assert "country" in dataset.schema.names


def test_a_glob_matches_parquet_files_only(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "parts" / "a.parquet", ids_table(2))
    write(root1 / "parts" / "b.parquet", ids_table(2, start=2))
    write(root1 / "parts" / "sub" / "c.parquet", ids_table(2, start=4))
    (root1 / "parts" / "readme.txt").write_text("not data")
    flat = datamod.resolve_source("parts/*", [str(root1)])
    assert flat.files == [real(root1 / "parts" / "a.parquet"), real(root1 / "parts" / "b.parquet")]
    assert read_ids(flat, []) == {0, 1, 2, 3}
    deep = datamod.resolve_source("parts/**/*.parquet", [str(root1)])
    assert read_ids(deep, []) == set(range(6))
    with pytest.raises(DataError, match=r"data path parts/\*\.csv does not exist"):
        datamod.resolve_source("parts/*.csv", [str(root1)])


def test_a_relative_path_is_looked_up_in_the_roots_in_order(roots: Any) -> None:
    root1, root2, _ = roots
    write(root1 / "shared.parquet", ids_table(1, start=100))
    write(root2 / "shared.parquet", ids_table(1, start=200))
    write(root2 / "only2.parquet", ids_table(1, start=300))
    both = [str(root1), str(root2)]
    assert read_ids(datamod.resolve_source("shared.parquet", both), []) == {100}
    assert read_ids(datamod.resolve_source("shared.parquet", both[::-1]), []) == {200}
    assert read_ids(datamod.resolve_source("only2.parquet", both), []) == {300}


def test_a_missing_path_names_the_roots_it_looked_in(roots: Any) -> None:
    root1, root2, _ = roots
    with pytest.raises(DataError, match=rf"data path nope\.parquet does not exist \(looked in: "
                                        rf"{root1}, {root2}\); check data\.features\.path") as exc:
        datamod.resolve_source("nope.parquet", [str(root1), str(root2)])
    assert not isinstance(exc.value, DataAccessDenied)
    with pytest.raises(DataError, match=r"does not exist"):
        datamod.resolve_source(str(root1 / "nope.parquet"), [str(root1)])


def test_an_absolute_path_outside_the_roots_is_denied(roots: Any) -> None:
    root1, _, outside = roots
    with pytest.raises(DataAccessDenied, match=rf"data path {outside}/secret\.parquet is outside "
                                               r"the configured data roots"):
        datamod.resolve_source(str(outside / "secret.parquet"), [str(root1)])


def test_a_root_is_not_a_prefix_of_its_sibling(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data-private" / "x.parquet", ids_table(1))
    with pytest.raises(DataAccessDenied):
        datamod.resolve_source(str(tmp_path / "data-private" / "x.parquet"),
                               [str(tmp_path / "data")])


def test_dotdot_cannot_escape_a_root(roots: Any) -> None:
    root1, _, _ = roots
    write(root1 / "a.parquet", ids_table(1))
    with pytest.raises(DataAccessDenied, match=r"data path \.\./outside/secret\.parquet is "
                                               r"outside the configured data roots"):
        datamod.resolve_source("../outside/secret.parquet", [str(root1)])
    with pytest.raises(DataError):
        datamod.resolve_source("../outside/*.parquet", [str(root1)])
    # `..` that stays inside the root is fine
    inside = datamod.resolve_source("sub/../a.parquet", [str(root1)])
    assert inside.files == [real(root1 / "a.parquet")]


def test_a_symlink_to_a_file_outside_the_root_is_denied(roots: Any) -> None:
    root1, _, outside = roots
    (root1 / "link.parquet").symlink_to(outside / "secret.parquet")
    (root1 / "linked_dir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataAccessDenied):
        datamod.resolve_source("link.parquet", [str(root1)])
    with pytest.raises(DataAccessDenied):
        datamod.resolve_source("linked_dir", [str(root1)])


def test_outside_the_roots_answers_the_same_whether_or_not_the_file_exists(roots: Any) -> None:
    """Otherwise the refusal tells a client which files exist outside the roots."""
    root1, _, outside = roots
    (root1 / "dangling.parquet").symlink_to(outside / "missing.parquet")

    def refusal(path: str) -> str:
        with pytest.raises(DataAccessDenied) as exc:
            datamod.resolve_source(path, [str(root1)])
        return str(exc.value).replace(path, "PATH")

    answers = {refusal(p) for p in (
        "../outside/secret.parquet", "../outside/missing.parquet",
        str(outside / "secret.parquet"), str(outside / "missing.parquet"),
        "link-to-nothing/../../outside/secret.parquet", "dangling.parquet")}
    assert answers == {"data path PATH is outside the configured data roots; move the data "
                       "under one of them or start the server with --data-root"}
    (root1 / "link.parquet").symlink_to(outside / "secret.parquet")
    message = refusal("link.parquet")
    assert str(outside) not in message and str(root1) not in message


def test_a_nul_character_in_a_path_is_refused(roots: Any) -> None:
    root1, _, _ = roots
    with pytest.raises(DataError, match=r"data path 'a\\x00\.parquet' holds a NUL character"):
        datamod.resolve_source("a\x00.parquet", [str(root1)])


@pytest.mark.parametrize("path", ["mixed", "mixed/*.parquet"])
def test_a_symlink_inside_a_folder_or_glob_cannot_read_outside(roots: Any, path: str) -> None:
    root1, _, outside = roots
    write(root1 / "mixed" / "ok.parquet", ids_table(2))
    (root1 / "mixed" / "evil.parquet").symlink_to(outside / "secret.parquet")
    try:
        source = datamod.resolve_source(path, [str(root1)])
    except DataAccessDenied:
        return
    assert read_ids(source, []) == {0, 1}, "rows of a file outside the data root were read"


def test_a_file_that_is_not_parquet_says_so(roots: Any) -> None:
    root1, _, _ = roots
    (root1 / "notes.parquet").write_text("charge_id,amount\n1,2\n")
    (root1 / "table.csv").write_text("charge_id,amount\n1,2\n")
    for name in ("notes.parquet", "table.csv"):
        source = datamod.resolve_source(name, [str(root1)])
        with pytest.raises(DataError, match=rf"^{name.replace('.', '[.]')} is not readable as "
                                            r"parquet: .*; Modelyard reads parquet files"):
            datamod.open_dataset(source)


def test_an_arrow_ipc_file_is_read_as_parquet_is(roots: Any) -> None:
    """A fleet's plan writes its tenants' partitions in Arrow's file format."""
    import pyarrow.ipc

    root1, _, _ = roots
    with pa.OSFile(str(root1 / "t000001.arrow"), "wb") as fh, \
            pyarrow.ipc.new_file(fh, ids_table(8).schema) as writer:
        writer.write_table(ids_table(8))
    source = datamod.resolve_source("t000001.arrow", [str(root1)])
    dataset = datamod.open_dataset(source)
    assert read_ids(source, []) == set(range(8))
    assert dataset.count_rows(filter=pc.field("id") < 3) == 3
    fingerprint = datamod.fingerprint(source, dataset)
    assert fingerprint["total_rows"] is None  # no parquet footer: the job counts the rows
    assert fingerprint["files"][0]["size"] == (root1 / "t000001.arrow").stat().st_size
    (root1 / "broken.arrow").write_text("not arrow")
    with pytest.raises(DataError, match=r"^broken[.]arrow is not readable as an Arrow IPC file"):
        datamod.open_dataset(datamod.resolve_source("broken.arrow", [str(root1)]))


def test_a_folder_without_parquet_files_says_so(roots: Any) -> None:
    root1, _, _ = roots
    (root1 / "empty").mkdir()
    (root1 / "empty" / "data.csv").write_text("a\n1\n")
    with pytest.raises(DataError, match=r"data folder empty holds no \.parquet files"):
        datamod.resolve_source("empty", [str(root1)])


def test_a_memory_url_is_read_inside_its_root_and_denied_outside(
    memory_bucket: str, tmp_path: Path
) -> None:
    fs = fsspec.filesystem("memory")
    for name, start in (("a", 0), ("b", 10)):
        with fs.open(f"memory://{memory_bucket}/t/{name}.parquet", "wb") as fh:
            pq.write_table(ids_table(3, start=start), fh)
    root = f"memory://{memory_bucket}/"
    one = datamod.resolve_source(f"memory://{memory_bucket}/t/a.parquet", [str(tmp_path), root])
    assert one.display == f"memory://{memory_bucket}/t/a.parquet"
    assert read_ids(one, []) == {0, 1, 2}
    folder = datamod.resolve_source(f"memory://{memory_bucket}/t/", [root])
    assert read_ids(folder, []) == {0, 1, 2, 10, 11, 12}
    glob = datamod.resolve_source(f"memory://{memory_bucket}/t/b*", [root])
    assert read_ids(glob, [make_filter("id", "GreaterThan", {"number_val": 10})]) == {11, 12}
    for other_roots in ([str(tmp_path)], [f"memory://{memory_bucket}-other/"], []):
        with pytest.raises(DataAccessDenied, match=rf"data URL memory://{memory_bucket}/t/a\."
                                                   r"parquet is outside the configured data roots"):
            datamod.resolve_source(f"memory://{memory_bucket}/t/a.parquet", other_roots)
    with pytest.raises(DataError, match=r"names no parquet file; check data\.features\.path"):
        datamod.resolve_source(f"memory://{memory_bucket}/t/nope.parquet", [root])


def test_dotdot_in_a_url_cannot_escape_a_root(roots: Any) -> None:
    root1, _, _ = roots
    with pytest.raises(DataAccessDenied):
        datamod.resolve_source(f"file://{root1}/../outside/secret.parquet", [f"file://{root1}/"])


# --------------------------------------------------------------------------------------------
# filters are pushed down into the scan


def test_a_selective_filter_on_a_sorted_column_reads_few_row_groups(
    tmp_path: Path, counting_fs: type[CountingFileSystem]
) -> None:
    rows = 100_000
    rng = np.random.default_rng(0)
    table = pa.table({
        "k": pa.array(np.arange(rows, dtype=np.int64)),
        "v": pa.array(rng.random(rows)),
        "s": pa.array(rng.choice(["alpha", "beta", "gamma", "delta"], size=rows)),
    })
    write(tmp_path / "big.parquet", table, row_group_size=10_000)  # 10 row groups
    source = datamod.resolve_source(f"counting://{tmp_path}/big.parquet",
                                    [f"counting://{tmp_path}/"])
    dataset = datamod.open_dataset(source)

    def bytes_for(columns: list[str], filters: list[Filter]) -> tuple[int, int]:
        counting_fs.bytes_read = 0
        out = datamod.scan(dataset, columns, build_filter(filters, dataset.schema))
        return counting_fs.bytes_read, out.num_rows

    everything, n_all = bytes_for(["k", "v", "s"], [])
    last_group, n_last = bytes_for(
        ["k", "v", "s"], [make_filter("k", "GreaterThanOrEqual", {"number_val": 95_000})])
    one_column, _ = bytes_for(["k"], [])
    assert (n_all, n_last) == (rows, 5_000)
    # One row group of ten, plus footers: the statistics let the scan skip the other nine.
    assert last_group < everything / 4, (last_group, everything)
    assert one_column < everything / 2, (one_column, everything)


# --------------------------------------------------------------------------------------------
# fingerprint


def fingerprint_of(path: str, root: Path) -> dict[str, Any]:
    source = datamod.resolve_source(path, [str(root)])
    return datamod.fingerprint(source, datamod.open_dataset(source))


def test_fingerprint_is_stable_and_changes_when_a_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "data" / "a.parquet", ids_table(10))
    first = fingerprint_of("data", tmp_path)
    assert first["digest"].startswith("sha256:") and len(first["digest"]) == 7 + 64
    assert first["file_count"] == 1 and first["total_bytes"] == path.stat().st_size
    assert first["files"][0]["num_rows"] == 10 and first["schema"] == {"id": "int64"}
    assert first["total_rows"] == 10  # from the footer: the job needs no count of its own
    assert fingerprint_of("data", tmp_path) == first

    write(path, ids_table(11))  # rewritten with other rows
    rewritten = fingerprint_of("data", tmp_path)
    assert rewritten["digest"] != first["digest"]

    stat = path.stat()  # the same bytes written again later
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))
    touched = fingerprint_of("data", tmp_path)
    assert touched["digest"] != rewritten["digest"]
    assert fingerprint_of("data", tmp_path)["digest"] == touched["digest"]

    write(tmp_path / "data" / "b.parquet", ids_table(1))  # a file added
    added = fingerprint_of("data", tmp_path)
    assert added["file_count"] == 2 and added["digest"] != touched["digest"]
    assert added["total_rows"] == 12
