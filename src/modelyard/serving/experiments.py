"""Experiments in serving: which arm answers a request, and what each arm served.

The request path does a dictionary lookup, a hash and a bisect
(:meth:`~modelyard.experiments.assignment.Allocation.pick`) on a table that a background
thread rebuilds from the experiments' rows (the weights the controller writes) and swaps whole,
so a request reads it without a lock. It then counts the request under its arm (requests,
errors, a latency bucket, score bins) and queues the assignment; the same thread writes both
(:func:`modelyard.experiments.store.record_served`) every ``poll_s``, which is what outcomes
are matched against and what the controller's guardrails read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import NotFound
from modelyard.experiments import metrics
from modelyard.experiments.assignment import Allocation, running_allocations
from modelyard.experiments.store import ArmCounts, Assigned, record_served
from modelyard.registry import store as registry
from modelyard.serving.batching import last_column
from modelyard.serving.loading import VersionRef
from modelyard.serving.routing import version_ref
from modelyard.ticker import Ticker

log = logging.getLogger("modelyard.serving")


@dataclasses.dataclass(frozen=True)
class Live:
    """A running experiment with its arms' versions, ready to load."""

    allocation: Allocation
    refs: tuple[VersionRef, ...]


@dataclasses.dataclass(frozen=True)
class Assignment:
    experiment_id: str
    arm: str
    ref: VersionRef
    counts: ArmCounts
    unit: str | None  # the request's, or its unit column's value


class Splitter:
    def __init__(self, sessions: sessionmaker[Session], poll_s: float = 0.5) -> None:
        self.sessions = sessions
        self.poll_s = poll_s
        self.server = uuid.uuid4().hex  # this process's rows of per-arm counts
        self._table: dict[tuple[str, str], Live] = {}
        self._counts: dict[tuple[str, str], ArmCounts] = {}
        self._assigned: list[Assigned] = []
        self._lock = threading.Lock()  # the counts and the queue, against the writer
        self._write_lock = threading.Lock()
        # Keeps splitting by the last table while the database hiccups.
        self._ticker = Ticker("modelyard-experiments-split", poll_s, self._poll, log,
                              "experiment refresh failed; splitting by the previous weights")
        self.refresh()

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()
        self.flush()

    def _poll(self) -> None:
        self.flush()
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the table from the running experiments' rows (and their versions)."""
        with self.sessions() as session:
            allocations = running_allocations(session)
            old = {live.allocation.experiment_id: live for live in self._table.values()}
            table = {}
            for a in allocations:
                known = old.get(a.experiment_id)
                refs = (known.refs if known is not None and known.allocation.versions ==
                        a.versions else _refs(session, a))
                if refs is not None:
                    table[(a.model_name, a.tenant)] = Live(a, refs)
        self._table = table  # one reference swap: a request sees the old table or the new
        running = {live.allocation.experiment_id for live in table.values()}
        with self._lock:  # an ended experiment's counts were written by the flush before
            self._counts = {k: c for k, c in self._counts.items() if k[0] in running}

    def assign(self, model_name: str, tenant: str, unit: str | None,
               rows: Sequence[dict[str, Any]]) -> Assignment | None:
        """The arm that answers a request of ``tenant`` (the registry tenant that answers),
        by ``unit`` or, if none, the experiment's unit column in the first row."""
        live = self._table.get((model_name, tenant))
        if live is None:
            return None
        a = live.allocation
        if unit is None and a.unit_column is not None and rows:
            value = rows[0].get(a.unit_column)
            unit = None if value is None else str(value)
        i = a.pick(unit)
        key = (a.experiment_id, a.arms[i])
        counts = self._counts.get(key)
        if counts is None:  # an arm's first request here: the writer iterates the dict
            with self._lock:
                counts = self._counts.setdefault(key, ArmCounts(
                    a.experiment_id, a.arms[i], 0, 0,
                    [0] * (len(metrics.LATENCY_BUCKETS_MS) + 1), [0] * metrics.SCORE_BINS))
        return Assignment(a.experiment_id, a.arms[i], live.refs[i], counts, unit)

    def served(self, assignment: Assignment, request_id: str | None, at: float,
               latency_ms: float, scores: list[Any] | None) -> None:
        """Count a request under its arm (``scores`` None: it failed) and queue its
        assignment (a failed request has none: no outcome can follow it)."""
        bins = metrics.score_bins(last_column(scores).tolist()) if scores else None
        bucket = metrics.latency_bucket(latency_ms)
        c, unit = assignment.counts, assignment.unit
        with self._lock:
            c.requests += 1
            c.latency_ms[bucket] += 1
            if bins is None:
                c.errors += 1
            else:
                c.scores = metrics.add(c.scores, bins)
            if request_id is not None:
                self._assigned.append(Assigned(
                    request_id, assignment.experiment_id, assignment.arm,
                    unit[:200] if unit is not None else None,
                    dt.datetime.fromtimestamp(at, dt.UTC)))

    def flush(self) -> None:
        """Write the queued assignments and this process's counts."""
        with self._write_lock:
            with self._lock:
                assigned, self._assigned = self._assigned, []
                counts = [dataclasses.replace(c, latency_ms=list(c.latency_ms),
                                              scores=list(c.scores))
                          for c in self._counts.values()]
            if not assigned and not counts:
                return
            with self.sessions() as session:
                record_served(session, self.server, assigned, counts)


def _refs(session: Session, a: Allocation) -> tuple[VersionRef, ...] | None:
    try:
        return tuple(version_ref(registry.read_version(session, a.model_name, v, a.tenant))
                     for v in a.versions)
    except NotFound:  # a version deleted under a running experiment: serve production
        log.warning("experiment %s names a version that is gone; production answers",
                    a.experiment_id)
        return None
