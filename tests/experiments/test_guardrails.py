"""Rollouts whose treatment fails or is slow on live traffic halt and roll back on the
error-rate and latency p99 guardrails, through the real server (its controller looks every
0.2 s), audited with the figures."""

from __future__ import annotations

from typing import Any

from modelyard.client import Client
from modelyard.errors import ModelyardError
from tests.conftest import wait_until
from tests.experiments.conftest import UNSEEN, rows


def _rollout_until_halted(fast: Client, model: str, treatment: int,
                          guardrails: dict[str, Any], country: str = "US"
                          ) -> tuple[dict[str, Any], list[str]]:
    """Run a 50% rollout of ``treatment`` with ``guardrails`` and send requests until it
    ends; the experiment's final card and what answered each request (an arm, production, or
    "error")."""
    experiment = fast.create_experiment({
        "model_name": model, "type": "rollout", "ramp": [0.5, 1.0],
        "arms": [{"name": "control", "version": 1}, {"name": "treatment", "version": treatment}],
        "guardrails": {**guardrails, "min_traffic": 10}})
    answered: list[str] = []
    while fast.experiment(experiment["id"])["state"] == "running" and len(answered) < 300:
        for _ in range(5):
            try:
                answered.append(fast.predict(model, rows(2, country))["arm"] or "production")
            except ModelyardError:
                answered.append("error")
    return fast.experiment(experiment["id"]), answered


def _audited(fast: Client, model: str, card: dict[str, Any], version: int) -> None:
    (event,) = [e for e in fast.events(model) if card["id"] in e["reason"]]
    assert event["reason"] == f"experiment {card['id']} halted: {card['reason']}"
    assert (event["version"], event["actor"]) == (version, "modelyard")
    # Back to production once this server's serving has read the halt.
    wait_until(lambda: fast.predict(model, rows())["experiment"] is None)


def test_a_treatment_that_fails_on_live_rows_breaks_the_error_rate_guardrail(
        fast: Client, model: str) -> None:
    card, answered = _rollout_until_halted(fast, model, 4, {"max_error_rate": 0.05}, UNSEEN)
    assert card["state"] == "halted", card
    # Every failed request was the treatment's; the control kept answering.
    assert "error" in answered and "control" in answered and "treatment" not in answered
    treatment = card["arms"][1]
    assert treatment["requests"] >= 10 and treatment["errors"] == treatment["requests"]
    (rate,) = [g for g in card["guardrails"] if g["name"] == "error_rate"]
    assert (rate["status"], rate["value"]) == ("broken", 1.0)
    assert card["reason"] == ("rolled back to control: guardrail broken: treatment error_rate "
                              "1 > 0.05")
    _audited(fast, model, card, 4)


def test_a_slow_treatment_breaks_the_latency_guardrail(fast: Client, model: str) -> None:
    card, answered = _rollout_until_halted(fast, model, 5, {"max_latency_p99_ms": 75})
    assert card["state"] == "halted", card
    assert "error" not in answered and {"control", "treatment"} <= set(answered)
    treatment = card["arms"][1]
    # Its 120 ms calls land in the 150 ms bucket or above (the bucket's edge is what counts).
    assert treatment["latency_p99_ms"] >= 150
    (p99,) = [g for g in card["guardrails"] if g["name"] == "latency_p99_ms"]
    assert p99["status"] == "broken"
    assert card["reason"] == ("rolled back to control: guardrail broken: treatment "
                              f"latency_p99_ms {treatment['latency_p99_ms']:g} > 75")
    _audited(fast, model, card, 5)
