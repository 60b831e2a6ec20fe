"""Which arm serves a request: what serving reads of a running experiment, and the pick.

A unit (a customer, a session) always lands on the same point in [0, 1): the first 8 bytes of
``sha256(salt + unit)``. The arms own consecutive slices of [0, 1) sized by their current
weights, so a unit keeps its arm while the weights hold, and a bisect finds it. Without a unit
the point is random. The salt is the experiment's own, so one experiment's split says nothing
of another's.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import random
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.experiments.tables import RUNNING, ExperimentRow

_SCALE = float(2**64)


@dataclasses.dataclass(frozen=True)
class Allocation:
    """A running experiment as serving splits its traffic."""

    experiment_id: str
    model_name: str
    tenant: str
    salt: bytes
    unit_column: str | None
    arms: tuple[str, ...]
    versions: tuple[int, ...]
    cumulative: tuple[float, ...]  # each arm's upper edge in [0, 1]; the last is 1

    def pick(self, unit: str | None) -> int:
        """The index of the arm that serves ``unit`` (random when None)."""
        if unit is None:
            point = random.random()
        else:
            digest = hashlib.sha256(self.salt + unit.encode()).digest()
            point = int.from_bytes(digest[:8], "big") / _SCALE
        return min(bisect.bisect_right(self.cumulative, point), len(self.arms) - 1)


def cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    total = sum(weights)
    edges, running = [], 0.0
    for w in weights:
        running += w / total
        edges.append(running)
    edges[-1] = 1.0
    return tuple(edges)


def running_allocations(session: Session) -> list[Allocation]:
    """Every running experiment's allocation, as serving's refresh reads it."""
    rows = session.scalars(select(ExperimentRow).where(ExperimentRow.state == RUNNING)).all()
    out = []
    for row in rows:
        arms = row.spec["arms"]
        out.append(Allocation(
            experiment_id=row.id, model_name=row.model_name, tenant=row.tenant,
            salt=row.salt.encode(), unit_column=row.spec.get("unit_column"),
            arms=tuple(a["name"] for a in arms), versions=tuple(a["version"] for a in arms),
            cumulative=cumulative(row.weights)))
    return out
