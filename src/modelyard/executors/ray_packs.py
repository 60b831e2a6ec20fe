"""What the Ray executor's relay follows: one job's task (:class:`RayRun`) or one pack of a
fleet's small tenants (:class:`RayPack`), each settling its own jobs' terminal events.

A pack is one long-lived :class:`~modelyard.executors.ray_node.PackWorker` actor, holding the
pack's resources (one worker slot) for its life. Each :meth:`RayPack.feed` is one ``run`` call on
it, which Ray runs after the calls before it: the first batch when the pack starts, then one
batch per :class:`PackIdle` the actor sends, until the dispatcher feeds it nothing and the actor
is ended. The relay thread (:mod:`modelyard.executors.ray`) hands each run the events the
mailbox holds under its key, then which of its Ray references are done.

When the actor dies (its process killed, its node lost), the job it was running fails with a
reason naming the node, and the jobs it was fed but never started are reported ``not_started``,
which a fleet queues again: as with the local executor's packs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
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
    """A fleet's pack: one actor, the ``run`` calls it was given, and the jobs it still owes."""

    pack_id: str
    actor: Any
    on_event: OnEvent
    wake: Callable[[], None]  # the relay: a call to follow
    calls: list[Any] = dataclasses.field(default_factory=list)
    pending: set[str] = dataclasses.field(default_factory=set)  # owed a terminal event
    started: set[str] = dataclasses.field(default_factory=set)
    host: str | None = None  # the worker_host its last started job reported
    ending: bool = False  # fed nothing: it ends once its calls return
    closed: bool = False
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def cancel(self) -> None:
        try:
            ray.kill(self.actor, no_restart=True)
        except Exception as exc:  # already gone, or the cluster is
            log.debug("kill of pack %s: %s", self.pack_id, exc)

    def feed(self, specs: list[WorkerSpec]) -> bool:
        """Queue ``specs`` on the actor (none: it ends after its calls); False if it is gone."""
        with self.lock:
            if self.closed:
                return False
            if specs:
                self.pending.update(s.job_id for s in specs)
                self.calls.append(self.actor.run.remote([for_the_cluster(s) for s in specs]))
            else:
                self.ending = True
        self.wake()
        return True

    def refs(self) -> list[Any]:
        with self.lock:
            return list(self.calls)

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
        """Account for its calls that are ``done``; True once the pack is over, its jobs all
        reported and :class:`PackEnded` said."""
        crash: BaseException | None = None
        for ref in [c for c in self.refs() if c in done]:
            try:
                ray.get(ref, timeout=60)
            except Exception as exc:  # the actor died: its later calls fail the same way
                crash = exc
                break
            with self.lock:
                self.calls.remove(ref)
        with self.lock:
            if crash is None and not (self.ending and not self.calls):
                return False
            self.closed = True
            lost, self.pending = sorted(self.pending), set()
        self.cancel()  # nothing left for it to do, or already dead
        if crash is not None:
            record = pack_lost_record(crash, self.host)
        else:
            record = failure(FailureKind.protocol_error,
                             "the pack's Ray actor returned without reporting the job's end")
        for event in lost_job_errors(lost, self.started, record, packed=True):
            self.on_event(event)
        self.on_event(PackEnded(self.pack_id))
        return True
