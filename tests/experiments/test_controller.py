"""The controller through the real server (it looks every 0.2 s): a rollout whose treatment
breaks the score PSI guardrail halts and rolls back, audited; a bandit fed rewards through
POST /outcomes moves its traffic to the better arm."""

from __future__ import annotations

import random
import time

from modelyard.client import Client
from tests.conftest import wait_until
from tests.experiments.conftest import rows


def test_a_rollout_halts_and_rolls_back_when_a_guardrail_breaks(fast: Client,
                                                                model: str) -> None:
    experiment = fast.create_experiment({
        "model_name": model, "type": "rollout", "ramp": [0.5, 1.0],
        "arms": [{"name": "control", "version": 1}, {"name": "complement", "version": 3}],
        "guardrails": {"max_score_psi": 0.25, "min_traffic": 20}})
    experiment_id = experiment["id"]
    answers = []
    # Bounded by time, not by requests: on a loaded machine the controller's looks and the
    # per-arm counts' writes lag behind many more requests than on a quiet one.
    deadline = time.monotonic() + 90
    while fast.experiment(experiment_id)["state"] == "running" and time.monotonic() < deadline:
        answers += [fast.predict(model, rows(5)) for _ in range(10)]
    card = fast.experiment(experiment_id)
    assert card["state"] == "halted", card
    # Both arms served until the halt; production (no arm) answered the requests after it.
    assert {a["arm"] for a in answers} - {None} == {"control", "complement"}
    (psi,) = [g for g in card["guardrails"] if g["name"] == "score_psi"]
    assert psi["status"] == "broken" and psi["value"] > 0.25
    assert card["reason"].startswith("rolled back to control: guardrail broken: complement "
                                     "score_psi ")
    # Production answers again (once this server's serving has read the halt).
    wait_until(lambda: fast.predict(model, rows())["experiment"] is None)
    events = [e for e in fast.events(model) if experiment_id in e["reason"]]
    assert events[0]["reason"] == f"experiment {experiment_id} halted: {card['reason']}"
    assert events[0]["version"] == 3 and events[0]["actor"] == "modelyard"


def test_a_bandit_moves_traffic_to_the_better_arm(fast: Client, model: str) -> None:
    experiment = fast.create_experiment({
        "model_name": model, "type": "bandit", "min_share": 0.05,
        "arms": [{"name": "old", "version": 1}, {"name": "better", "version": 2}],
        "stopping": {"prob_best": None}})
    experiment_id = experiment["id"]
    rate = {"old": 0.2, "better": 0.6}
    rng = random.Random(7)
    for _ in range(12):
        answers = [fast.predict(model, rows(), unit=f"u{rng.random()}") for _ in range(25)]
        fast.add_outcomes([{"request_id": a["request_id"],
                            "reward": float(rng.random() < rate[a["arm"]])} for a in answers])
    wait_until(lambda: fast.experiment(experiment_id)["weights"][1] > 0.9)
    card = fast.experiment(experiment_id)
    better = card["arms"][1]
    assert better["prob_best"] > 0.99 and card["weights"][0] >= 0.05  # old keeps min_share
    assert card["state"] == "running"  # no prob_best threshold: it keeps exploring
    served = [fast.predict(model, rows(), unit=f"late-{i}")["arm"] for i in range(100)]
    assert served.count("better") > 70


def test_a_healthy_rollout_advances_stage_by_stage_to_all_traffic(fast: Client,
                                                                   model: str) -> None:
    experiment = fast.create_experiment({
        "model_name": model, "type": "rollout", "ramp": [0.2, 0.6, 1.0],
        "stage_min_s": 0, "stage_min_requests": 20,
        "arms": [{"name": "control", "version": 1}, {"name": "treatment", "version": 2}],
        "guardrails": {"max_score_psi": 0.25, "min_traffic": 20}})
    experiment_id = experiment["id"]
    stages = [fast.experiment(experiment_id)["stage"]]
    for _ in range(80):
        for _ in range(10):
            fast.predict(model, rows(2))
        card = fast.experiment(experiment_id)
        assert card["state"] == "running", card  # the guardrails hold: never halted
        if card["stage"] != stages[-1]:
            stages.append(card["stage"])
        if card["stage"] == 2:
            break
    assert stages == [0, 1, 2]  # one stage at a time, in the ramp's order
    assert card["weights"] == [0.0, 1.0]
    # Once this server's serving has read the last stage, the treatment answers every request
    # the experiment answers (until the controller concludes it: production answers then).
    wait_until(lambda: fast.predict(model, rows())["arm"] == "treatment")
    answers = [fast.predict(model, rows(), unit=f"u{i}") for i in range(30)]
    assert {a["arm"] for a in answers if a["experiment"] is not None} == {"treatment"}
