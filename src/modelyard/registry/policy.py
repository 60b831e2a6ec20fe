"""A model's promotion policy, and the approval gate that applies it: may this version become
production?

Yes if a named user approved it. Otherwise only if the model's policy says ``auto_promote`` and
the candidate beats production by the policy's margin on the policy's metric, measured on the
same holdout window (same sampling and the same data path), or there is no production version
yet. Every answer carries the reason, with the numbers.

A person's approval also passes :func:`four_eyes` when the server knows identities: the
approver may not be who submitted the job that trained the version, unless the policy says
``four_eyes: false`` (the audit event then says it was waived, and by whose policy).

A model without a stored policy has the default one: no auto-promotion, ``roc_auc``, higher is
better, no margin, same holdout required, four eyes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from modelyard.errors import Forbidden
from modelyard.registry.audit import now
from modelyard.registry.tables import ApprovalRow, PolicyRow, VersionRow


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def decide(candidate: VersionRow, production: VersionRow | None, policy: PolicyRow,
           approvals: Sequence[ApprovalRow]) -> Decision:
    if approvals:
        last = approvals[-1]
        return Decision(True, f"approved by {last.approver}: {last.comment}")
    if not policy.auto_promote:
        return Decision(False, (
            "promotion to production needs an approval: POST /models/"
            f"{candidate.model_name}/versions/{candidate.version}/approve with "
            '{"user": ..., "comment": ...}, or a policy with auto_promote'))
    if production is None:
        return Decision(True, "first production version (policy auto_promote)")
    if policy.require_same_holdout and candidate.holdout != production.holdout:
        return Decision(False, (
            f"its holdout window differs from production's (version {production.version}), "
            "so their metrics are not comparable; approve it by hand"))
    metric = policy.metric
    new, old = _number(candidate.metrics, metric), _number(production.metrics, metric)
    if new is None or old is None:
        missing = "the candidate" if new is None else f"production (version {production.version})"
        return Decision(False, f"{metric} is missing for {missing}")
    margin = policy.min_improvement
    if policy.higher_is_better:
        ok, need, cmp = new >= old + margin, old + margin, ">="
    else:
        ok, need, cmp = new <= old - margin, old - margin, "<="
    verdict = (f"{metric} {new:.4f} {cmp if ok else 'is not ' + cmp} {need:.4f} "
               f"(production version {production.version}: {old:.4f}, margin {margin:g})")
    return Decision(ok, verdict)


def four_eyes(candidate: VersionRow, policy: PolicyRow, approver: str,
              submitted_by: str | None) -> str:
    """Check that ``approver`` did not submit the job that trained ``candidate``.

    Args:
        submitted_by: that job's submitter; None if it is not recorded (the job was submitted
            while the server had no tokens), which counts as the approver's own.

    Returns:
        What the audit event adds: '' when another identity approves, else the waiver.

    Raises:
        Forbidden: the approver submitted the job (or it is unknown who did), and the policy
            does not waive the rule.
    """
    if submitted_by is not None and submitted_by != approver:
        return ""
    why = (f"{approver!r} submitted job {candidate.job_id}, which trained it"
           if submitted_by is not None
           else f"who submitted job {candidate.job_id}, which trained it, is not recorded")
    if not policy.four_eyes:
        return (f"four eyes waived by the model's policy (set by "
                f"{policy.updated_by or 'nobody'}): {why}")
    raise Forbidden(
        f"version {candidate.version} of {candidate.model_name!r} needs another approver "
        f"(four eyes): {why}; an approver who did not submit it approves it, or the model's "
        "policy waives the rule (four_eyes false)")


def _number(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def read_policy(session: Session, model_name: str) -> PolicyRow:
    """The model's policy, or the default one (not stored) if it has none."""
    row = session.get(PolicyRow, model_name)
    if row is None:
        return PolicyRow(model_name=model_name, auto_promote=False, metric="roc_auc",
                         min_improvement=0.0, higher_is_better=True, require_same_holdout=True,
                         four_eyes=True, updated_by="", updated_at=now())
    return row


def set_policy(session: Session, model_name: str, *, auto_promote: bool, metric: str,
               min_improvement: float, higher_is_better: bool, require_same_holdout: bool,
               actor: str, four_eyes: bool = True) -> PolicyRow:
    """Store the model's policy (replacing the previous one) and commit."""
    row = session.get(PolicyRow, model_name)
    if row is None:
        row = PolicyRow(model_name=model_name)
        session.add(row)
    row.auto_promote = auto_promote
    row.metric = metric
    row.min_improvement = min_improvement
    row.higher_is_better = higher_is_better
    row.require_same_holdout = require_same_holdout
    row.four_eyes = four_eyes
    row.updated_by = actor
    row.updated_at = now()
    session.commit()
    return row
