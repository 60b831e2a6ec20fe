"""A run's events as a JSON-lines file in the artefact store: how a Kubernetes worker reports.

The worker pod cannot reach the server, but both reach the artefact store, so the worker
appends one line per event to ``<artifact root>/runs/<job id>/events.jsonl`` and the executor
tails it. On a local (or mounted) filesystem a line is appended and fsynced; object stores
cannot append, so the worker rewrites the whole file, one atomic put per event (a job reports a
few dozen events). Either way the file only grows by whole lines: a reader keeps a byte offset
and decodes the complete lines past it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import fsspec

from modelyard.protocol.codec import EventDecodeError, event_from_json, event_to_json
from modelyard.protocol.events import WorkerEvent

log = logging.getLogger("modelyard.executors.k8s_events")

EVENTS_FILE = "events.jsonl"
_PUT_ATTEMPTS = 4


def _locate(artifact_root: str, job_id: str) -> tuple[Any, str, bool]:
    fs, root = fsspec.core.url_to_fs(artifact_root)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return fs, f"{root.rstrip('/')}/runs/{job_id}/{EVENTS_FILE}", "file" in protocols


def events_url(artifact_root: str, job_id: str) -> str:
    """Where the events of ``job_id`` are written, as a user can open it."""
    fs, path, local = _locate(artifact_root, job_id)
    return path if local else str(fs.unstrip_protocol(path))


class EventFileWriter:
    """Appends events to a run's events file (inside the worker)."""

    def __init__(self, artifact_root: str, job_id: str) -> None:
        self.fs, self.path, self._local = _locate(artifact_root, job_id)
        self._written = b""  # object stores: the whole file so far, rewritten on each event
        if self._local:
            self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)

    def append(self, event: WorkerEvent) -> None:
        """Write ``event`` as the file's next line; it is durable when this returns."""
        line = (event_to_json(event) + "\n").encode()
        if self._local:
            with open(self.path, "ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            return
        content = self._written + line
        for attempt in range(_PUT_ATTEMPTS):
            try:
                self.fs.pipe_file(self.path, content)
                break
            except OSError as exc:  # a transient store error must not lose the job's result
                if attempt == _PUT_ATTEMPTS - 1:
                    raise
                log.warning("writing %s failed (%s); retrying", self.path, exc)
                time.sleep(2**attempt)
        self._written = content


def parse_events(data: bytes, offset: int) -> tuple[list[WorkerEvent], int]:
    """Decode the complete lines of ``data`` past byte ``offset``.

    Returns the events and the offset just past the last complete line (a line still being
    written has no newline yet and waits for the next read).

    Raises:
        EventDecodeError: a complete line is not an event, or the file shrank below ``offset``.
    """
    if len(data) < offset:
        raise EventDecodeError(
            f"the events file shrank from {offset} to {len(data)} bytes; another worker for "
            "the same job may be writing it"
        )
    end = data.rfind(b"\n", offset) + 1
    if end <= offset:
        return [], offset
    lines = data[offset:end].splitlines()
    return [event_from_json(line) for line in lines if line.strip()], end


class EventFileTailer:
    """Reads a run's new events from its events file (in the executor)."""

    def __init__(self, artifact_root: str, job_id: str) -> None:
        self.fs, self.path, _ = _locate(artifact_root, job_id)
        self.offset = 0

    def reset(self) -> None:
        """Remove the file an earlier attempt of the same job may have left."""
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            pass
        self.offset = 0

    def poll(self) -> list[WorkerEvent]:
        """The events written since the last call (none while the file does not exist).

        Raises:
            EventDecodeError: the file holds something that is not an event.
            OSError: the store cannot be read now (try again later).
        """
        try:
            data: bytes = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return []
        found, self.offset = parse_events(data, self.offset)
        return found
