"""The job state machine: one enum, one table of allowed moves.

::

    created -> queued -> running -> succeeded
       |         |          |----> failed
       |         |          '----> cancelled
       '---------'---------------> cancelled | failed

A new job is written created and queued at once (:func:`modelyard.jobs.store.insert_jobs`).
After that every writer (API, dispatcher, recovery at start-up) goes through
:func:`modelyard.jobs.store.move_jobs`, which makes only the moves this table allows and stamps
time and reason, or through its single form :func:`modelyard.jobs.store.transition`.
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    """A job's state. Members are listed in the machine's order: every move goes to a later one
    (``move_jobs`` relies on it)."""

    created = "created"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})

ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.created: frozenset({JobState.queued, JobState.cancelled, JobState.failed}),
    JobState.queued: frozenset({JobState.running, JobState.cancelled, JobState.failed}),
    JobState.running: frozenset({JobState.succeeded, JobState.failed, JobState.cancelled}),
    JobState.succeeded: frozenset(),
    JobState.failed: frozenset(),
    JobState.cancelled: frozenset(),
}


def sources_of(target: JobState) -> frozenset[JobState]:
    """The states from which ``target`` may be reached."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)
