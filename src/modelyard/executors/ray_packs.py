"""What the Ray executor's relay follows: one job's task (:class:`RayRun`) or one pack of a
fleet's small tenants (:class:`RayPack`), each settling its own jobs' terminal events.

A pack is one long-running Ray task (:func:`~modelyard.executors.ray_node.run_pack`) holding the
pack's resources (one worker slot): it runs its first batch of tenants, and then each batch the
dispatcher answers its :class:`PackIdle` with (:meth:`RayPack.feed`, through the mailbox),
until it is fed none. The relay thread (:mod:`modelyard.executors.ray`) hands each run the
events the mailbox holds under its key, then which of its Ray references are done.

When the pack's worker dies (its process killed, its node lost), the job it was running fails
with a reason naming the node, and the jobs it was fed but never started are reported
``not_started``, which a fleet queues again: as with the local executor's packs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from typing import Any

import ray

from modelyard.executors.base import OnEvent
from modelyard.executors.ray_failures import lost_record, pack_lost_record
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    PackEnded,
    WorkerEvent,
    WorkerSpec,
    WorkerStarted,
    lost_job_errors,
)
from modelyard.protocol.results import FailureKind, failure

log = logging.getLogger("modelyard.executors.ray")


def for_the_cluster(spec: WorkerSpec) -> WorkerSpec:
    """``spec`` with an absolute artefact root: a Ray worker's working directory is not the
    server's."""
    root = spec.artifact_root
    if "://" in root:
        return spec
    return dataclasses.replace(spec, artifact_root=os.path.abspath(root))


@dataclasses.dataclass
class RayRun:
    """One job's Ray task."""

    job_id: str
    ref: Any
    on_event: OnEvent

    def cancel(self) -> None:
        try:
            ray.cancel(self.ref, force=True)
        except Exception as exc:  # already finished, or the cluster is gone
            log.debug("cancel of job %s: %s", self.job_id, exc)

    def refs(self) -> list[Any]:
        return [self.ref]

    def deliver(self, events: list[WorkerEvent]) -> None:
        for event in events:
            self.on_event(event)

    def settle(self, done: set[Any]) -> bool:
        """Report the job's end if its task is ``done``; True then."""
        if self.ref not in done:
            return False
        self.on_event(self._outcome())
        return True

    def _outcome(self) -> WorkerEvent:
        try:
            event = ray.get(self.ref, timeout=60)
        except Exception as exc:
            return JobErrored(self.job_id, lost_record(exc))
        if isinstance(event, JobFinished | JobErrored):
            return event
        return JobErrored(self.job_id, failure(
            FailureKind.protocol_error, f"bad result from the Ray task: {event!r:.200}"))


@dataclasses.dataclass
class RayPack:
    """A fleet's pack: its task, and the jobs it still owes a terminal event."""

    pack_id: str
    ref: Any
    mailbox: Any
    on_event: OnEvent
    pending: set[str] = dataclasses.field(default_factory=set)
    started: set[str] = dataclasses.field(default_factory=set)
    host: str | None = None  # the worker_host its last started job reported
    closed: bool = False
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def cancel(self) -> None:
        try:
            ray.cancel(self.ref, force=True)  # kills its worker process
        except Exception as exc:  # already finished, or the cluster is gone
            log.debug("cancel of pack %s: %s", self.pack_id, exc)

    def feed(self, specs: list[WorkerSpec]) -> bool:
        """Answer the pack's PackIdle: its next jobs (none: it ends); False if it is gone."""
        with self.lock:
            if self.closed:
                return False
            self.pending.update(s.job_id for s in specs)
            self.mailbox.feed.remote(self.pack_id, [for_the_cluster(s) for s in specs])
        return True

    def refs(self) -> list[Any]:
        return [self.ref]

    def deliver(self, events: list[WorkerEvent]) -> None:
        for event in events:
            if isinstance(event, WorkerStarted):
                self.started.add(event.job_id)
                self.host = event.host
            elif isinstance(event, JobFinished | JobErrored):
                with self.lock:
                    self.pending.discard(event.job_id)
            self.on_event(event)

    def settle(self, done: set[Any]) -> bool:
        """Once its task is ``done``: report the jobs it left without an end (all of them
        if it died), then :class:`PackEnded`; True then."""
        if self.ref not in done:
            return False
        crash: BaseException | None = None
        try:
            ray.get(self.ref, timeout=60)
        except Exception as exc:
            crash = exc
        with self.lock:
            self.closed = True
            lost, self.pending = sorted(self.pending), set()
        if crash is not None:
            with contextlib.suppress(Exception):  # else an answer it never took stays there
                self.mailbox.next_jobs.remote(self.pack_id)
            record = pack_lost_record(crash, self.host)
        else:
            record = failure(FailureKind.protocol_error,
                             "the pack's Ray task returned without reporting the job's end")
        for event in lost_job_errors(lost, self.started, record, packed=True):
            self.on_event(event)
        self.on_event(PackEnded(self.pack_id))
        return True
