"""The artefact store the worker writes to: content-addressed blobs, verified on read, and job
folders that appear whole or not at all, on a local folder and on an fsspec URL.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import fsspec
import pytest

from modelyard.artifacts import SUCCESS_MARKER, ArtifactStore, digest
from modelyard.errors import ArtifactError, NotFound

from .test_training import leftovers


def test_put_bytes_is_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    first = store.put_bytes(b"model bytes")
    path = Path(store.blob_path(first))
    before = path.stat()
    assert store.put_bytes(b"model bytes") == first == digest(b"model bytes")
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert first == "sha256:" + hashlib.sha256(b"model bytes").hexdigest()
    assert path.relative_to(tmp_path / "store").parts == (
        "objects", "sha256", first[7:9], first[9:])
    assert store.get_bytes(first) == b"model bytes"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_get_bytes_detects_a_tampered_blob(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    object_id = store.put_bytes(b"the real model")
    Path(store.blob_path(object_id)).write_bytes(b"a swapped model")
    with pytest.raises(ArtifactError, match=rf"artefact {object_id} in .* is corrupt: its bytes "
                                            rf"hash to {re.escape(digest(b'a swapped model'))}"):
        store.get_bytes(object_id)


def test_get_bytes_of_an_unknown_or_malformed_id(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(NotFound, match=r"no artefact sha256:0{64} in "):
        store.get_bytes("sha256:" + "0" * 64)
    for bad in ("md5:abc", "sha256:1234", "0" * 64):
        with pytest.raises(ArtifactError, match=r"is not a content address"):
            store.get_bytes(bad)


def test_a_job_folder_appears_whole(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(NotFound, match=r"job j1 has no complete artefacts"):
        store.read_job_file("j1", "metrics.json")
    paths = store.write_job_files("j1", {"metrics.json": b'{"auc": 0.9}', "scores.tsv": b"s\n"})
    assert set(paths) == {"metrics.json", "scores.tsv"}
    assert Path(paths["scores.tsv"]).read_bytes() == b"s\n"
    assert store.read_job_json("j1", "metrics.json") == {"auc": 0.9}
    assert sorted(p.name for p in (tmp_path / "store" / "jobs").iterdir()) == ["j1"]
    assert (tmp_path / "store" / "jobs" / "j1" / SUCCESS_MARKER).exists()
    with pytest.raises(NotFound, match=r"job j1 has no artefact 'nope\.json'"):
        store.read_job_file("j1", "nope.json")


class _Exploding(dict[str, bytes]):
    """A mapping of files whose second file cannot be produced."""

    def items(self) -> Any:
        yield "metrics.json", b"{}"
        raise OSError("disk full")


def test_a_failed_job_write_leaves_no_job_folder(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(OSError, match="disk full"):
        store.write_job_files("j1", _Exploding())
    assert not Path(store.job_dir("j1")).exists()
    with pytest.raises(NotFound):
        store.read_job_file("j1", "metrics.json")


def test_a_job_folder_is_never_overwritten(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    store.write_job_files("j1", {"metrics.json": b"1"})
    with pytest.raises(ArtifactError, match=r"artefacts for job j1 already exist at "):
        store.write_job_files("j1", {"metrics.json": b"2"})
    assert store.read_job_file("j1", "metrics.json") == b"1"


@pytest.mark.parametrize("failure", ["already exists", "write fails"])
def test_a_failed_job_write_leaves_no_temporary_folder(tmp_path: Path, failure: str) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    if failure == "already exists":
        store.write_job_files("j1", {"metrics.json": b"1"})
        with pytest.raises(ArtifactError):
            store.write_job_files("j1", {"metrics.json": b"2"})
    else:
        with pytest.raises(OSError):
            store.write_job_files("j1", _Exploding())
    assert leftovers(tmp_path / "store") == []


def test_the_store_works_on_an_fsspec_url(memory_bucket: str) -> None:
    store = ArtifactStore(f"memory://{memory_bucket}/artifacts")
    object_id = store.put_bytes(b"blob")
    assert store.put_bytes(b"blob") == object_id and store.get_bytes(object_id) == b"blob"
    paths = store.write_job_files("j1", {"labels.tsv": b"label\n1\n"})
    assert paths["labels.tsv"].startswith("memory://")
    with fsspec.open(paths["labels.tsv"], "rb") as fh:  # the path given out opens the file
        assert fh.read() == b"label\n1\n"
    assert store.read_job_file("j1", "labels.tsv") == b"label\n1\n"
    store.fs.pipe_file(store.blob_path(object_id), b"other")
    with pytest.raises(ArtifactError, match="is corrupt"):
        store.get_bytes(object_id)
