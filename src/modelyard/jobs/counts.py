"""How many jobs are in each state: one GROUP BY over the indexed state column, for figures
read often (``/metrics`` at every scrape)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow


def count_jobs_by_state(session: Session) -> dict[JobState, int]:
    """Jobs in the store by state, every state present (0 when none)."""
    counts = dict.fromkeys(JobState, 0)
    for state, count in session.execute(
            select(JobRow.state, func.count()).group_by(JobRow.state)):
        counts[JobState(state)] = count
    return counts
