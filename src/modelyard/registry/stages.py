"""Stages of a model version and the moves between them.

::

    candidate -> shadow -> production -> archived
        |          |  ^         |
        |          v  |         '-> (rollback brings the previous production back)
        '----------'--'--------> archived

At most one ``production`` version per (model name, tenant): promoting one archives the one it
replaces, in the same transaction. Promotion to production passes the approval gate
(:mod:`modelyard.registry.policy`).
"""

from __future__ import annotations

import enum


class Stage(enum.StrEnum):
    candidate = "candidate"
    shadow = "shadow"
    production = "production"
    archived = "archived"


ALLOWED: dict[Stage, frozenset[Stage]] = {
    Stage.candidate: frozenset({Stage.shadow, Stage.production, Stage.archived}),
    Stage.shadow: frozenset({Stage.candidate, Stage.production, Stage.archived}),
    Stage.production: frozenset({Stage.archived}),
    Stage.archived: frozenset({Stage.candidate, Stage.shadow, Stage.production}),
}

GLOBAL_TENANT = "*"

# The stages serving routes to: production answers, shadows are scored beside it.
SERVED_STAGES = (Stage.production.value, Stage.shadow.value)
