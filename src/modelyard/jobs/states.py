"""The job state machine: one enum, one table of allowed moves.

::

    created -> queued -> running -> succeeded
                 |          |----> failed
                 |          '----> cancelled
                 '---------------> cancelled | failed

Every writer (API, dispatcher, recovery at start-up) goes through
:func:`modelyard.jobs.store.transition`, which checks this table and stamps time and reason, or
through its batch forms in the same module (moves this table allows, conditional the same way).
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
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
