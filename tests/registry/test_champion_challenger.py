"""Champion/challenger on the same rows, and guard rails on every promotion, through the real
server: a version's worker scores the production version of the time on the candidate's holdout
rows, rules compare on those numbers whatever the holdout windows, and a promotion that breaks
a guard rail is refused with the numbers and audited, a person's approval included."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.client import Client
from modelyard.errors import Conflict
from tests.registry.conftest import train_version

DUMMY = {"max_iter": None, "estimator": "sklearn.dummy.DummyClassifier"}  # roc_auc 0.5


def shifted(request: dict[str, Any], start: str) -> dict[str, Any]:
    """The request with its holdout window starting elsewhere (a weekly retrain's)."""
    out = copy.deepcopy(request)
    out["holdout_sampling"]["date_range_sampling"]["start_date"] = start
    return out


def test_auto_promotion_compares_on_the_same_rows_whatever_the_holdout_windows(
        client: Client, model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    client.set_policy(name, actor="ops", auto_promote=True, metric="roc_auc",
                      min_improvement=0.01)
    first = train_version(client, model_request, **DUMMY)
    assert first["stage"] == "production"
    assert first["evidence"]["champion"] is None  # nothing in production to score
    assert first["evidence"]["holdout_rows"] == first["metrics"]["holdout_rows"]

    # A later window: production scored on the new holdout rows, and beaten there.
    better = train_version(client, shifted(model_request, "2018-11-01"), max_iter=60)
    assert better["holdout"] != first["holdout"]
    evidence = client.version(name, better["version"])["evidence"]
    champion = evidence["champion"]
    assert (champion["version"], champion["model_id"]) == (first["version"], first["model_id"])
    assert champion["metrics"]["roc_auc"] == pytest.approx(0.5)  # the constant scorer
    assert champion["metrics"]["holdout_rows"] == better["metrics"]["holdout_rows"]
    assert champion["score_psi"] > 0
    assert client.version(name, better["version"])["stage"] == "production"
    promoted = next(e for e in client.events(name) if e["version"] == better["version"]
                    and e["to_stage"] == "production")
    assert f"on the same {evidence['holdout_rows']:,} holdout rows" in promoted["reason"]

    # A worse model on yet another window is refused, on the numbers of its own rows.
    worse = train_version(client, shifted(model_request, "2018-10-15"), **DUMMY)
    assert client.version(name, worse["version"])["stage"] == "candidate"
    refusal = client.events(name)[0]
    assert refusal["version"] == worse["version"] and refusal["actor"] == "policy"
    theirs = client.version(name, worse["version"])["evidence"]["champion"]["metrics"]
    assert refusal["reason"].startswith(
        f"not promoted: roc_auc {worse['metrics']['roc_auc']:.4f} is not >= "
        f"{theirs['roc_auc'] + 0.01:.4f}")

    # models compare shows both on the same rows.
    same = client.compare(name, first["version"], better["version"])["same_rows"]
    assert (same["champion"], same["challenger"]) == (first["version"], better["version"])
    auc = next(r for r in same["metrics"] if r["metric"] == "roc_auc")
    assert auc == {"metric": "roc_auc", "champion": champion["metrics"]["roc_auc"],
                   "challenger": better["metrics"]["roc_auc"],
                   "delta": pytest.approx(better["metrics"]["roc_auc"]
                                          - champion["metrics"]["roc_auc"])}
    shown = CliRunner().invoke(cli, ["models", "compare", name, str(first["version"]),
                                     str(better["version"]), "--url", client.url])
    assert shown.exit_code == 0, shown.output
    assert f"on the same {same['rows']:,} holdout rows of v{better['version']}" in shown.output


def test_a_rule_never_compares_with_a_production_that_changed_since(
        client: Client, model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    first = train_version(client, model_request, **DUMMY)
    client.approve(name, first["version"], user="ann", comment="first")
    pending = train_version(client, model_request, max_iter=40)  # compared with v1
    newer = train_version(client, model_request, max_iter=10)
    client.approve(name, newer["version"], user="ann", comment="meanwhile")
    client.set_policy(name, actor="ops", auto_promote=True)
    with pytest.raises(Conflict, match=(
            rf"it was compared with version {first['version']}, but production is now "
            rf"version {newer['version']}; retrain it, or approve it by hand")):
        client.set_stage(name, pending["version"], "production", actor="ops")


def test_guard_rails_refuse_any_promotion_with_the_numbers_and_audit_it(
        client: Client, model_request: dict[str, Any]) -> None:
    name = model_request["metadata"]["model_name"]
    first = train_version(client, model_request, **DUMMY)
    rows = first["evidence"]["holdout_rows"]
    positives = first["evidence"]["holdout_positives"]
    assert 0 < positives < rows
    client.set_policy(name, actor="ops", auto_promote=False, min_holdout_rows=rows + 1,
                      min_holdout_positives=positives + 1)
    with pytest.raises(Conflict) as refused:
        client.approve(name, first["version"], user="ann", comment="ship it")
    message = str(refused.value)
    assert f"{rows:,} holdout rows, under the minimum of {rows + 1:,}" in message
    assert f"{positives:,} positives in the holdout, under the minimum of {positives + 1:,}" in (
        message)
    audit = client.events(name)[0]
    assert (audit["from_stage"], audit["to_stage"], audit["actor"]) == (
        "candidate", "candidate", "ann")
    assert audit["reason"].startswith("promotion to production refused by the guard rails: ")
    assert client.version(name, first["version"])["stage"] == "candidate"

    client.set_policy(name, actor="ops", auto_promote=False)
    client.approve(name, first["version"], user="ann", comment="ship it")

    # Against production: the score shift on the same rows, and the latency per row.
    second = train_version(client, model_request, max_iter=40)
    psi = second["evidence"]["champion"]["score_psi"]
    latency = second["evidence"]["latency_ms_per_row"]
    assert psi > 0.01 and latency > 0
    client.set_policy(name, actor="ops", auto_promote=False, max_score_psi=psi / 2,
                      max_latency_ms_per_row=latency / 2)
    client.set_stage(name, second["version"], "shadow", actor="ops")  # not a promotion: allowed
    with pytest.raises(Conflict) as refused:
        client.approve(name, second["version"], user="ann", comment="ship it")
    message = str(refused.value)
    assert f"score PSI {psi:.4f} against production version {first['version']}, over the " \
           f"maximum of {psi / 2:g}" in message
    assert f"latency per row {latency:.4f} ms, over the maximum of {latency / 2:g} ms" in message
    assert client.version(name, second["version"])["stage"] == "shadow"
    policy = client.policy(name)
    assert (policy["max_score_psi"], policy["max_latency_ms_per_row"]) == (psi / 2, latency / 2)
