"""Content-addressed artefact store on any fsspec filesystem (a local folder by default).

Layout under the root::

    objects/sha256/<2 hex>/<62 hex>     immutable blobs; the id is "sha256:<64 hex>"
    jobs/<job id>/                      one folder per job: scores.tsv, labels.tsv, metrics.json,
                                        provenance.json, model.json (model id + how to load it)
    fleets/<job id>/tenants/            a fleet plan's partitions, one Arrow IPC file per tenant

It sits beside the layers rather than in one: the worker writes artefacts, the server, the
registry and serving read them.

Writes are atomic. A blob is written to a temporary name and renamed into place (object stores
make a single put atomic already). A job folder is assembled under a temporary name and renamed
whole, so a reader sees all of a job's artefacts or none; on object stores, ``_SUCCESS`` is written
last and readers require it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec

from modelyard.errors import ArtifactError, NotFound

SUCCESS_MARKER = "_SUCCESS"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Bytes under content addresses, plus per-job artefact folders."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root)
        self._local = "file" in protocols(self.fs)
        if self._local:
            os.makedirs(self._root_path, exist_ok=True)

    def _join(self, *parts: str) -> str:
        return "/".join([self._root_path.rstrip("/"), *parts])

    def join(self, *parts: str) -> str:
        """A path under the root, in the store's filesystem (for ``self.fs``)."""
        return self._join(*parts)

    def url(self, path: str) -> str:
        """A path a user can open: a plain path locally, a full URL elsewhere."""
        return path if self._local else self.fs.unstrip_protocol(path)

    def fleet_root(self, parent_id: str) -> str:
        """Where a fleet's plan writes its tenants' partitions (a URL a worker can read)."""
        return self.url(self.join("fleets", parent_id))

    def blob_path(self, object_id: str) -> str:
        algo, _, hexdigest = object_id.partition(":")
        if algo != "sha256" or len(hexdigest) != 64:
            raise ArtifactError(f"{object_id!r} is not a content address (sha256:<64 hex digits>)")
        return self._join("objects", "sha256", hexdigest[:2], hexdigest[2:])

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its id. Storing the same bytes twice writes once."""
        object_id = digest(data)
        path = self.blob_path(object_id)
        if self.fs.exists(path):
            return object_id
        self._atomic_write(path, data)
        return object_id

    def get_bytes(self, object_id: str) -> bytes:
        """The bytes stored under ``object_id``, verified against it.

        Raises:
            NotFound: no such object.
            ArtifactError: the stored bytes do not hash to the id (corruption or tampering).
        """
        path = self.blob_path(object_id)
        try:
            with self.fs.open(path, "rb") as fh:
                data: bytes = fh.read()
        except FileNotFoundError:
            raise NotFound(f"no artefact {object_id} in {self.root}") from None
        if digest(data) != object_id:
            raise ArtifactError(
                f"artefact {object_id} in {self.root} is corrupt: its bytes hash to {digest(data)}"
            )
        return data

    def _atomic_write(self, path: str, data: bytes) -> None:
        if self._local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def job_dir(self, job_id: str) -> str:
        return self._join("jobs", job_id)

    def write_job_files(self, job_id: str, files: Mapping[str, bytes]) -> dict[str, str]:
        """Write a job's artefacts all at once; return each file's user-facing path."""
        final = self.job_dir(job_id)
        if self._local:
            if os.path.exists(final):
                raise ArtifactError(f"artefacts for job {job_id} already exist at {final}")
            tmp = self._join("jobs", f".tmp-{job_id}-{uuid.uuid4().hex[:8]}")
            os.makedirs(tmp)
            try:
                for name, data in files.items():
                    if "/" in name:  # a pipeline step's artefacts keep their folders
                        os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
                    with open(os.path.join(tmp, name), "wb") as fh:
                        fh.write(data)
                with open(os.path.join(tmp, SUCCESS_MARKER), "wb"):
                    pass
                if os.path.exists(final):  # a writer of the same job got there first
                    raise ArtifactError(f"artefacts for job {job_id} already exist at {final}")
                os.rename(tmp, final)
            finally:
                # A write either completes or leaves nothing, not even its temporary folder.
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            for name, data in files.items():
                self.fs.pipe_file(f"{final}/{name}", data)
            self.fs.pipe_file(f"{final}/{SUCCESS_MARKER}", b"")
        return {name: self.url(f"{final}/{name}") for name in files}

    def read_job_file(self, job_id: str, name: str) -> bytes:
        final = self.job_dir(job_id)
        if not self.fs.exists(f"{final}/{SUCCESS_MARKER}"):
            raise NotFound(f"job {job_id} has no complete artefacts in {self.root}")
        try:
            with self.fs.open(f"{final}/{name}", "rb") as fh:
                data: bytes = fh.read()
                return data
        except FileNotFoundError:
            raise NotFound(f"job {job_id} has no artefact {name!r}") from None

    def read_job_json(self, job_id: str, name: str) -> Any:
        return json.loads(self.read_job_file(job_id, name))


def protocols(fs: Any) -> set[str]:
    """The names an fsspec filesystem answers to (``{"file", "local"}`` for a local one)."""
    proto = fs.protocol
    return set(proto) if isinstance(proto, tuple | list) else {proto}
