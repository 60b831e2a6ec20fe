"""What this server runs now: each job's worker handle, clock and log, and its live packs.

Only the dispatcher's loop thread reads and changes it. A worker holds one slot however many
jobs it runs (a pack), and a refillable pack holds its slot while idle between fills. A job leaves
it through :meth:`Running.end` (or its halves) once, whatever ended it, which observes its
duration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from modelyard.executors.base import Refillable, RunHandle
from modelyard.jobs.joblog import JobLog
from modelyard.jobs.metrics import JobMetrics
from modelyard.protocol.events import JobErrored, JobFinished, PackEnded, PackIdle, TenantsReady


@dataclass
class Run:
    """One job running on this server."""

    handle: RunHandle  # its worker's, shared by the jobs of a pack
    deadline: float | None  # the time.monotonic() at which it times out
    timeout: float | None
    log: JobLog
    kind: str = "train"  # the job's kind (train, fleet, tenant, step...): a metrics label
    started: float = field(default_factory=time.monotonic)


@dataclass
class LivePack:
    """A live refillable pack: its worker holds a slot even while idle between fills."""

    handle: Refillable
    parent_id: str  # the fleet whose tenants it takes
    asked: bool = False  # it said PackIdle and has not been answered yet


@dataclass
class Running:
    """The jobs running here, by job id, and the live refillable packs, by pack id."""

    runs: dict[str, Run] = field(default_factory=dict)
    packs: dict[str, LivePack] = field(default_factory=dict)
    metrics: JobMetrics = field(default_factory=JobMetrics)

    def end(self, job_id: str, outcome: str) -> Run | None:
        """Take ``job_id`` out of the running jobs, observing its duration under ``outcome``
        (a job state); None if it was not running here (already ended)."""
        run = self.take(job_id)
        self.ended(run, outcome)
        return run

    def take(self, job_id: str) -> Run | None:
        """:meth:`end` in two halves, for an outcome known only once the store has been
        written: the job's slot is free even if that write fails. Call :meth:`ended` next."""
        return self.runs.pop(job_id, None)

    def ended(self, run: Run | None, outcome: str) -> None:
        if run is not None:
            self.metrics.job_ended(run.kind, outcome, time.monotonic() - run.started)

    def slots_used(self) -> int:
        """Workers alive: one per handle, whether it runs one job, several, or none yet."""
        return len({id(r.handle) for r in self.runs.values()}
                   | {id(p.handle) for p in self.packs.values()})

    def wait_time(self, longest: float, now: float) -> float:
        """Seconds until the next job times out, at most ``longest``."""
        deadlines = [r.deadline for r in self.runs.values() if r.deadline is not None]
        if not deadlines:
            return longest
        return min(longest, max(0.0, min(deadlines) - now))

    def expired(self, now: float) -> list[str]:
        """The jobs whose deadline has passed."""
        return [j for j, r in self.runs.items() if r.deadline is not None and r.deadline <= now]

    def pack_mates(self, stopped: set[str]) -> list[str]:
        """The jobs, not among ``stopped``, that share a worker with one of them."""
        handles = {id(self.runs[j].handle) for j in stopped if j in self.runs}
        return [j for j, r in self.runs.items() if id(r.handle) in handles and j not in stopped]

    def frees_slot(self, job_id: str, ended: set[str]) -> bool:
        """Whether the worker that ran ``job_id`` has no job left once ``ended`` have ended, so
        its slot is free, or is a refillable pack now waiting for its next jobs."""
        run = self.runs.get(job_id)
        if run is None:
            return False
        pack = next((p for p in self.packs.values() if p.handle is run.handle), None)
        if pack is not None and not pack.asked:
            return False  # it asks for more before its last job ends, or ends itself
        return all(j in ended for j, r in self.runs.items() if r.handle is run.handle)

    def ends_gathering(self, event: object, ended: set[str]) -> bool:
        """Whether the dispatcher applies a batch at ``event`` rather than gather more (``ended``:
        the jobs already ended in the batch, updated here): a pack waits for its answer
        (PackIdle), a plan's tenants wait for slots (TenantsReady), or a slot is free: a pack is
        gone, or a worker outside the packs has no job left (a job can be claimed for it)."""
        if isinstance(event, PackIdle | PackEnded | TenantsReady):
            return True
        if not isinstance(event, JobFinished | JobErrored):
            return False
        ended.add(event.job_id)
        return self.frees_slot(event.job_id, ended)

    def ready_to_fill(self, pack: LivePack) -> bool:
        """Whether a pack that asked for more is answered now: once it runs only tenants, or
        nothing. A fleet's plan or fallback model may run for seconds after it asks; tenants
        claimed for it then would wait while the other slots run dry."""
        return pack.asked and all(r.kind == "tenant" for r in self.runs.values()
                                  if r.handle is pack.handle)
