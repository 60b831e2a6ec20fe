"""The registry's actions as a caller asks for them: the JSON routes (``api/routes/models.py``)
and the web UI's model page call these, so both record the same actor and pass the same gates,
guard rails and four-eyes rule.

With tokens, the actor is the token's identity (a name the caller gives is ignored); without,
it is the name given, which must not be empty (:func:`~modelyard.api.auth.actor_of`).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from modelyard.api.auth import actor_of
from modelyard.api.registry_schemas import PolicyIn
from modelyard.auth.roles import Identity
from modelyard.jobs import store as jobs
from modelyard.registry import store
from modelyard.registry.stages import Stage
from modelyard.registry.tables import PolicyRow, VersionRow


def set_stage_as(session: Session, who: Identity, model_name: str, version: int, to: Stage, *,
                 tenant: str, reason: str, claimed: str | None) -> VersionRow:
    """Move a version to ``to`` (to production only through the approval gate)."""
    return store.set_stage(session, model_name, version, to,
                           actor=actor_of(who, claimed, "actor"), reason=reason, tenant=tenant)


def approve_as(session: Session, who: Identity, model_name: str, version: int, *, tenant: str,
               comment: str, claimed: str | None) -> VersionRow:
    """Approve a version into production. With tokens, the approver may not be who submitted
    the job that trained it (four eyes) unless the model's policy waives it."""
    submitted_by = None
    if who.authenticated:
        job_id = store.read_version(session, model_name, version, tenant).job_id
        submitted_by = jobs.read_job(session, job_id).submitted_by if job_id else None
    return store.approve_version(session, model_name, version,
                                 approver=actor_of(who, claimed, "user"), comment=comment,
                                 tenant=tenant, identified=who.authenticated,
                                 submitted_by=submitted_by)


def set_policy_as(session: Session, who: Identity, model_name: str, policy: PolicyIn
                  ) -> PolicyRow:
    """Replace the model's policy (a field not given takes its default)."""
    return store.set_policy(session, model_name, actor=actor_of(who, policy.actor, "actor"),
                            **policy.model_dump(exclude={"actor"}))


def rollback_as(session: Session, who: Identity, model_name: str, *, tenant: str, reason: str,
                claimed: str | None) -> VersionRow:
    """Return the previous production version of (model, tenant) to production."""
    return store.rollback(session, model_name, actor=actor_of(who, claimed, "actor"),
                          reason=reason, tenant=tenant)
