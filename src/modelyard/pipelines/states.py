"""The states of a pipeline run and of its steps.

::

    run:   queued -> running -> succeeded | failed | cancelled
              '--------------> cancelled

    step:  pending -> running -> succeeded | failed | cancelled
              |-----> succeeded   (a cache hit, or reused upstream of a rerun's --from)
              '-----> skipped | cancelled   (a step it needs did not succeed; the run stopped)

A run is *active* while queued or running; the database holds at most one active run per
(pipeline, tenant) (:data:`modelyard.pipelines.tables.ACTIVE_RUN_STATES`).
"""

from __future__ import annotations

import enum


class RunState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (RunState.succeeded, RunState.failed, RunState.cancelled)


class StepState(enum.StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    skipped = "skipped"

    @property
    def terminal(self) -> bool:
        return self not in (StepState.pending, StepState.running)


STOPPING = frozenset({StepState.failed, StepState.cancelled, StepState.skipped})
"""A step in one of these states stops every step that needs it."""
