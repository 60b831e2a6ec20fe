"""A model's promotion policy, and the approval gate that applies it: may this version become
production?

Yes if a named user approved it. Otherwise only if the model's policy says ``auto_promote`` and
the candidate beats production by the policy's margin on the policy's metric *on the same rows*:
when a version is trained, its worker scores the production version of its (model, tenant) on
the candidate's holdout rows too (champion/challenger, ``VersionRow.evidence``), so the rule
works whatever the holdout windows; or there is no production version yet. Every answer
carries the reason, with the numbers.

:func:`guard_rails` hold for every promotion, a person's included: minimum holdout rows and
positives, a maximum score shift (PSI) against production on the same rows, a maximum latency
per row. Each is off until the policy sets it.

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
    return beats_production(candidate, production, policy)


def beats_production(candidate: VersionRow, production: VersionRow, policy: PolicyRow
                     ) -> Decision:
    """Does the candidate beat production by the policy's margin on the policy's metric, on the
    same rows (production scored on the candidate's holdout when it was trained)?"""
    metric = policy.metric
    new = _number(candidate.metrics, metric)
    old, basis = production_on_same_rows(candidate, production, metric,
                                         policy.require_same_holdout)
    if basis is None:
        return Decision(False, f"{metric} is missing for the candidate")
    if new is None or old is None:
        missing = "the candidate" if new is None else f"production (version {production.version})"
        return Decision(False, f"{metric} is missing for {missing} {basis}".strip())
    ok, verdict = beats(new, old, metric, policy.higher_is_better, policy.min_improvement)
    return Decision(ok, f"{verdict} (production version {production.version}: {old:.4f} "
                        f"{basis})")


def production_on_same_rows(candidate: VersionRow, production: VersionRow, metric: str,
                            require_same_holdout: bool = True
                            ) -> tuple[float | None, str | None]:
    """Production's ``metric`` comparable with the candidate's, and on what rows; ``(None,
    why)`` where there is none to compare with (``why`` then says what to do).

    Production scored on the candidate's holdout rows when it was trained is the comparison.
    A candidate without one (registered before comparisons, or trained before there was a
    production) falls back to production's own metrics if their holdout windows are the same,
    or if the policy does not require it (``require_same_holdout: false``)."""
    evidence = candidate.evidence or {}
    scored = scored_production(candidate, production)
    if scored is not None:
        rows = evidence.get("holdout_rows")
        return (_number(scored.get("metrics") or {}, metric),
                f"on the same {rows:,} holdout rows" if isinstance(rows, int)
                else "on the same holdout rows")
    champion = evidence.get("champion")
    if champion is not None:
        return None, (f"not comparable: it was compared with version {champion.get('version')}"
                      f", but production is now version {production.version}; retrain it, or "
                      "approve it by hand")
    if evidence.get("champion_error"):
        return None, f"not comparable: {evidence['champion_error']}"
    if require_same_holdout and candidate.holdout != production.holdout:
        return None, (f"not comparable: production (version {production.version}) was not "
                      "scored on its holdout rows (it was trained before production existed "
                      "or before comparisons were recorded) and their holdout windows differ; "
                      "retrain it, or approve it by hand")
    return _number(production.metrics, metric), "on the same holdout window"


def scored_production(candidate: VersionRow, production: VersionRow) -> dict[str, Any] | None:
    """``production`` as the candidate's worker scored it on the candidate's holdout rows
    (``evidence.champion``: its metrics and the score PSI), if that is the version it scored."""
    champion = (candidate.evidence or {}).get("champion")
    if champion is not None and champion.get("version_id") == production.id:
        return dict(champion)
    return None


def beats(new: float, old: float, metric: str, higher_is_better: bool, margin: float
          ) -> tuple[bool, str]:
    """Whether ``new`` beats ``old``: by at least ``margin``, or strictly with no margin (a tie
    replaces nothing); and the sentence that says so."""
    if higher_is_better:
        need = old + margin
        ok, cmp = (new >= need, ">=") if margin > 0 else (new > need, ">")
    else:
        need = old - margin
        ok, cmp = (new <= need, "<=") if margin > 0 else (new < need, "<")
    return ok, (f"{metric} {new:.4f} {cmp if ok else 'is not ' + cmp} {need:.4f} (margin "
                f"{margin:g})")


def guard_rails(candidate: VersionRow, production: VersionRow | None, policy: PolicyRow
                ) -> str | None:
    """What of the policy's guard rails the candidate breaks, with the numbers; None if none.

    They hold for every promotion, a person's included: a holdout too small to trust, a
    score distribution too far from production's on the same rows, too slow a model."""
    evidence = candidate.evidence or {}
    problems = []
    rows = evidence.get("holdout_rows", candidate.metrics.get("holdout_rows"))
    if policy.min_holdout_rows and (rows is None or rows < policy.min_holdout_rows):
        problems.append(f"{_shown(rows)} holdout rows, under the minimum of "
                        f"{policy.min_holdout_rows:,}")
    positives = evidence.get("holdout_positives")
    if policy.min_holdout_positives and (positives is None
                                         or positives < policy.min_holdout_positives):
        problems.append(f"{_shown(positives)} positives in the holdout, under the minimum of "
                        f"{policy.min_holdout_positives:,}")
    if policy.max_score_psi is not None and production is not None:
        psi = (scored_production(candidate, production) or {}).get("score_psi")
        if psi is None:
            problems.append(f"no score shift (PSI) measured against production version "
                            f"{production.version} on the same rows, and the policy caps it "
                            f"at {policy.max_score_psi:g}")
        elif psi > policy.max_score_psi:
            problems.append(f"score PSI {psi:.4f} against production version "
                            f"{production.version}, over the maximum of "
                            f"{policy.max_score_psi:g}")
    latency = evidence.get("latency_ms_per_row")
    if policy.max_latency_ms_per_row is not None and (
            latency is None or latency > policy.max_latency_ms_per_row):
        shown = "not measured" if latency is None else f"{latency:.4f} ms"
        problems.append(f"latency per row {shown}, over the maximum of "
                        f"{policy.max_latency_ms_per_row:g} ms")
    return "; ".join(problems) or None


def _shown(value: Any) -> str:
    return "unknown" if value is None else f"{value:,}"


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
    return default_policy(model_name) if row is None else row


def default_policy(model_name: str) -> PolicyRow:
    """The policy of a model that has none stored (not stored)."""
    return PolicyRow(model_name=model_name, auto_promote=False, metric="roc_auc",
                     min_improvement=0.0, higher_is_better=True, require_same_holdout=True,
                     four_eyes=True, min_holdout_rows=0, min_holdout_positives=0,
                     max_score_psi=None, max_latency_ms_per_row=None,
                     fleet_promotion="auto", updated_by="", updated_at=now())


POLICY_FIELDS = ("auto_promote", "metric", "min_improvement", "higher_is_better",
                 "require_same_holdout", "four_eyes", "min_holdout_rows",
                 "min_holdout_positives", "max_score_psi", "max_latency_ms_per_row",
                 "fleet_promotion")


def set_policy(session: Session, model_name: str, *, actor: str, **fields: Any) -> PolicyRow:
    """Store the model's policy (replacing the previous one: a field not given takes its
    default) and commit.

    Args:
        fields: any of :data:`POLICY_FIELDS`.
    """
    unknown = sorted(fields.keys() - set(POLICY_FIELDS))
    if unknown:
        raise TypeError(f"a policy has no field {unknown[0]!r}")
    defaults = default_policy(model_name)
    row = session.get(PolicyRow, model_name)
    if row is None:
        row = PolicyRow(model_name=model_name)
        session.add(row)
    for name in POLICY_FIELDS:
        setattr(row, name, fields.get(name, getattr(defaults, name)))
    row.updated_by = actor
    row.updated_at = now()
    session.commit()
    return row
