"""The registry's store functions, in one place for the code outside the registry.

Routes, the dispatcher, fleets and serving call ``store.verb_noun(session, ...)`` and never
write registry SQL themselves. Each function lives in the module of its concept:

- :mod:`~modelyard.registry.registration`: ``register_version``, ``register_versions``
  (a succeeded job's model becomes the next candidate; auto-promotion by policy);
- :mod:`~modelyard.registry.versions`: ``read_version``, ``list_versions``, ``list_models`` (typed
  ``ModelOverview``),
  ``production_version``, ``production_versions``, ``serving_version`` (the one that answers a
  tenant, with fallbacks), ``compare_versions``, ``generation``, ``latest_version``,
  ``versions_of_jobs``;
- :mod:`~modelyard.registry.promotion`: ``set_stage``, ``approve_version``, ``rollback``,
  ``promote``, ``move`` (every stage move, one production per model and tenant);
- :mod:`~modelyard.registry.policy`: ``read_policy``, ``set_policy`` (and the approval gate);
- :mod:`~modelyard.registry.audit`: ``events_of``, ``approvals_of``, ``approvals_by_version``,
  ``record_event``, ``record_events``, ``StageMove`` (the audit trail).

Transactions: the verbs that are whole actions of their own commit (``set_stage``,
``approve_version``, ``rollback``, ``set_policy``); the others join the caller's transaction,
so a job becomes ``succeeded`` and its version appears together, and a fleet's graduation
promotes its winners in the transaction that ends the fleet.
"""

from __future__ import annotations

from modelyard.registry.audit import (
    StageMove,
    approvals_by_version,
    approvals_of,
    events_of,
    record_event,
    record_events,
)
from modelyard.registry.policy import read_policy, set_policy
from modelyard.registry.promotion import approve_version, move, promote, rollback, set_stage
from modelyard.registry.registration import Registered, register_version, register_versions
from modelyard.registry.versions import (
    ModelOverview,
    compare_versions,
    generation,
    latest_version,
    list_models,
    list_versions,
    production_version,
    production_versions,
    read_version,
    serving_version,
    versions_of_jobs,
)

__all__ = [
    "ModelOverview",
    "Registered",
    "StageMove",
    "approvals_by_version",
    "approvals_of",
    "approve_version",
    "compare_versions",
    "events_of",
    "generation",
    "latest_version",
    "list_models",
    "list_versions",
    "move",
    "production_version",
    "production_versions",
    "promote",
    "read_policy",
    "read_version",
    "record_event",
    "record_events",
    "register_version",
    "register_versions",
    "rollback",
    "set_policy",
    "serving_version",
    "set_stage",
    "versions_of_jobs",
]
