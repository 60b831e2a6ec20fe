"""Roles, each allowing what the one before it does and more, and the identity of a caller.

======== =====================================================================
viewer   read: every ``GET`` (jobs, logs, models, events, policies, reports)
trainer  + train, cancel and retry jobs, predict, send labels
approver + approve, move stages, roll back, set a model's policy
admin    + create, list and revoke tokens
======== =====================================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    viewer = "viewer"
    trainer = "trainer"
    approver = "approver"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may (roles include those below them)."""
        return self.rank >= needed.rank


_RANKS = {role: rank for rank, role in enumerate(Role)}

SHARED_TOKEN_NAME = "token"
"""The identity of ``MODELYARD_TOKEN``, the one shared token of a laptop server (an admin)."""


@dataclass(frozen=True)
class Identity:
    """Who calls: a token's name and role. ``name`` is empty when the server has no tokens."""

    name: str
    role: Role

    @property
    def authenticated(self) -> bool:
        """Whether the name comes from a token (else the server has no tokens: names that a
        request body gives are free text, and nobody is checked)."""
        return bool(self.name)


ANONYMOUS = Identity("", Role.admin)
"""Every caller of a server with no tokens: allowed everything, known by no name."""
SHARED = Identity(SHARED_TOKEN_NAME, Role.admin)
"""Every caller holding ``MODELYARD_TOKEN``."""
