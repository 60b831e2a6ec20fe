"""The controller ships an A/B winner itself only under a policy with ``auto_promote``,
through the same approval as a person's ship (the guard rails and the audit the same);
without it the experiment ends concluded, recommending the winner to a person."""

from __future__ import annotations

import random
from typing import Any

from modelyard.client import Client
from tests.experiments.conftest import rows, train_versions

RATES = {"control": 0.2, "new": 0.8}


def _run_until_decided(fast: Client, model: str, seed: int) -> dict[str, Any]:
    """An A/B experiment fed rewards at ``RATES`` until its stopping rule decides."""
    experiment = fast.create_experiment({
        "model_name": model, "type": "ab",
        "arms": [{"name": "control", "version": 1}, {"name": "new", "version": 2}],
        "stopping": {"alpha": 0.05, "min_outcomes": 20, "expected_lift": 1.0}})
    rng = random.Random(seed)
    for _ in range(20):
        card = fast.experiment(experiment["id"])
        if card["state"] != "running":
            return card
        answers = [fast.predict(model, rows(), unit=f"u{rng.random()}") for _ in range(20)]
        outcomes = [{"request_id": a["request_id"],
                     "reward": float(rng.random() < RATES[a["arm"]])}
                    for a in answers if a["arm"] is not None]  # None: it ended meanwhile
        if outcomes:
            fast.add_outcomes(outcomes)
    raise AssertionError(f"no verdict after 400 requests: {card}")


def _production(fast: Client, model: str) -> int:
    (version,) = [v["version"] for v in fast.versions(model) if v["stage"] == "production"]
    return int(version)


def test_the_controller_ships_only_when_the_policy_allows_it(fast: Client) -> None:
    model = train_versions(fast, ["Tiny", "Tiny"])
    card = _run_until_decided(fast, model, seed=1)
    assert (card["state"], card["winner"]) == ("concluded", "new"), card
    assert card["reason"].endswith(f"the model's policy needs a person to ship it: POST "
                                   f"/experiments/{card['id']}/ship")
    assert _production(fast, model) == 1

    fast.set_policy(model, auto_promote=True, actor="kelley")
    card = _run_until_decided(fast, model, seed=2)
    assert (card["state"], card["winner"]) == ("shipped", "new"), card
    assert card["reason"].startswith("new's lift +") and "is significant (sequential p = " \
        in card["reason"]
    assert _production(fast, model) == 2
    # The same approval a person's ship records, by the controller, with the experiment's
    # reason; then the experiment's own event (events come newest first).
    events = [e for e in fast.events(model) if card["id"] in e["reason"]][::-1]
    assert [(e["version"], e["to_stage"], e["actor"]) for e in events] == [
        (2, "production", "modelyard"), (2, "production", "modelyard")]
    assert events[0]["reason"] == (f"approved: experiment {card['id']}: {card['reason']} "
                                   "(policy auto_promote)")
    assert events[1]["reason"] == f"experiment {card['id']} shipped: {card['reason']}"
