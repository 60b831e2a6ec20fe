"""The scorecard through the real server, checked against scipy computed here on the same
outcomes (the lift's always-valid p-value and interval against the mixture integrated by
scipy); duplicate and late outcomes are counted and not used; shipping the winner goes
through the registry's approval gate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from scipy import stats

from modelyard.client import Client
from modelyard.errors import Conflict, RequestError
from tests.cli.test_cli import modelyard
from tests.conftest import ServerProcess
from tests.experiments.conftest import rows
from tests.experiments.test_sequential import _mixture


def _sequential(arm: dict[str, Any], xs: list[float], control: list[float],
                expected_lift: float) -> None:
    """The arm's p-value is 1 / the mixture likelihood ratio and its lift interval's edges
    are where that ratio reaches 1 / alpha (0.05), the mixture integrated by scipy."""
    d = float(np.mean(xs) - np.mean(control))
    v = float(np.var(xs, ddof=1) / len(xs) + np.var(control, ddof=1) / len(control))
    base = float(np.mean(control))
    tau2 = (expected_lift * base) ** 2
    assert arm["p_value"] == pytest.approx(min(1.0, 1 / _mixture(d, v, tau2)), rel=1e-5)
    for edge in arm["lift_interval"]:
        assert _mixture(d - edge * base, v, tau2) == pytest.approx(20, rel=1e-5)


def _served(client: Client, model: str, arm: str, n: int) -> list[str]:
    """Request ids of ``n`` predictions ``arm`` answered (units chosen until it does)."""
    ids: list[str] = []
    i = 0
    while len(ids) < n:
        answer = client.predict(model, rows(), unit=f"{arm}-{i}")
        i += 1
        if answer["arm"] == arm:
            ids.append(answer["request_id"])
    return ids


def test_scorecard_numbers_match_scipy_and_the_winner_ships_through_the_gate(
        fast_server: ServerProcess, fast: Client, model: str, tmp_path: Path) -> None:
    (tmp_path / "ab.yaml").write_text(yaml.safe_dump({
        "model_name": model, "type": "ab", "hypothesis": "v2 converts more",
        "arms": [{"name": "control", "version": 1}, {"name": "new", "version": 2}],
        "stopping": {"alpha": 0.05, "min_outcomes": 50, "expected_lift": 1.0}}))
    created = modelyard("experiments", "create", str(tmp_path / "ab.yaml"), url=fast_server.url)
    assert created.returncode == 0, created.stdout + created.stderr
    (experiment,) = fast.experiments(model, state="running")
    eid = experiment["id"]
    assert f"experiment {eid} running: ab on {model}" in created.stdout
    control, new = _served(fast, model, "control", 60), _served(fast, model, "new", 60)
    rewards = {"control": [1.0] * 15 + [0.0] * 45, "new": [1.0] * 33 + [0.0] * 27}
    batch = [{"request_id": r, "reward": x} for ids, arm in ((control, "control"), (new, "new"))
             for r, x in zip(ids, rewards[arm], strict=True)]
    assert fast.add_outcomes(batch)["matched"] == 120
    again = fast.add_outcomes(batch[:5] + [{"request_id": "never-served", "reward": 1.0}])
    assert (again["duplicates"], again["unknown"], again["matched"]) == (5, 1, 0)

    card = fast.experiment(eid)
    arms = {a["name"]: a for a in card["arms"]}
    for arm, xs in rewards.items():
        ci = stats.binomtest(int(sum(xs)), len(xs)).proportion_ci(0.95, method="wilson")
        assert arms[arm]["outcomes"] == 60 and arms[arm]["mean"] == pytest.approx(sum(xs) / 60)
        assert arms[arm]["interval"] == pytest.approx([ci.low, ci.high])
    assert arms["new"]["lift"] == pytest.approx(33 / 15 - 1)
    _sequential(arms["new"], rewards["new"], rewards["control"], expected_lift=1.0)
    assert arms["new"]["p_value"] < 0.05
    assert "always-valid sequential test (mSPRT, tuned to a 100% lift)" in card["method"]
    assert card["recommendation"]["action"] == "ship"
    assert card["recommendation"]["arm"] == "new"

    shown = modelyard("experiments", "show", eid, url=fast_server.url).stdout
    assert "recommendation: ship new: new's lift +120.00% is significant" in shown
    assert "new" in shown and "0.5500" in shown  # its mean

    shipped = fast.ship_experiment(eid, user="kelley", comment="lift holds")
    assert (shipped["state"], shipped["winner"]) == ("shipped", "new")
    (production,) = [v for v in fast.versions(model) if v["stage"] == "production"]
    assert production["version"] == 2
    late = fast.add_outcomes([{"request_id": new[0], "row": 1, "reward": 1.0,
                               "time": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                                        ).isoformat()}])
    assert (late["late"], late["matched"]) == (1, 0)
    assert fast.experiment(eid)["late_outcomes"] == 1
    with pytest.raises(Conflict, match="is shipped; only a running, concluded or stopped"):
        fast.ship_experiment(eid, user="kelley")
    fast.approve(model, 1, user="kelley", comment="back to v1 for the other tests")


def test_outcomes_are_bounded_and_checked(fast_server: ServerProcess) -> None:
    too_many = [{"request_id": "x", "reward": 1.0}] * 10_001
    answer = httpx.post(f"{fast_server.url}/outcomes", json={"outcomes": too_many})
    assert answer.status_code == 422 and "outcomes" in answer.text
    by_unit = httpx.post(f"{fast_server.url}/outcomes",
                         json={"outcomes": [{"unit": "u1", "reward": 1.0}]})
    assert by_unit.status_code == 422
    assert "experiment_id: outcomes by unit need the experiment's id" in by_unit.text
    both = httpx.post(f"{fast_server.url}/outcomes",
                      json={"outcomes": [{"unit": "u1", "request_id": "r", "reward": 1.0}]})
    assert both.status_code == 422 and "either request_id or unit" in both.text


def test_a_unit_column_assigns_and_outcomes_by_unit_reach_its_arm(fast: Client,
                                                                  model: str) -> None:
    experiment = fast.create_experiment({
        "model_name": model, "type": "ab", "unit_column": "card_age_days",
        "arms": [{"name": "control", "version": 1}, {"name": "new", "version": 2}]})
    eid = experiment["id"]
    by_unit = {}
    for age in range(30, 50):
        row = {**rows()[0], "card_age_days": age}
        first, again = fast.predict(model, [row]), fast.predict(model, [row])
        assert first["arm"] == again["arm"]  # the column's value is the unit
        by_unit[str(age)] = first["arm"]
    at = dt.datetime.now(dt.UTC).isoformat()
    added = fast.add_outcomes([{"unit": u, "reward": 1.0, "time": at} for u in by_unit],
                              experiment_id=eid)
    assert (added["matched"], added["unknown"]) == (20, 0)
    arms = {a["name"]: a["outcomes"] for a in fast.experiment(eid)["arms"]}
    assert arms == {arm: list(by_unit.values()).count(arm) for arm in ("control", "new")}


def test_a_continuous_reward_gets_t_intervals_and_the_sequential_lift(
        fast: Client, model: str) -> None:
    experiment = fast.create_experiment({
        "model_name": model, "type": "ab", "hypothesis": "v2 raises basket value",
        "arms": [{"name": "control", "version": 1}, {"name": "new", "version": 2}],
        "reward": {"kind": "continuous", "lo": 0, "hi": 100},
        "stopping": {"min_outcomes": 1000}})
    eid = experiment["id"]
    rewards = {"control": [10.0 + (i * 7) % 13 for i in range(30)],
               "new": [14.0 + (i * 5) % 17 for i in range(30)]}
    batch = [{"request_id": r, "reward": x} for arm, xs in rewards.items()
             for r, x in zip(_served(fast, model, arm, 30), xs, strict=True)]
    assert fast.add_outcomes(batch)["matched"] == 60
    with pytest.raises(RequestError, match=r"outcomes\[0\]\.reward: 250 is outside experiment "
                       rf"{eid}'s reward bounds \[0, 100\]"):
        fast.add_outcomes([{"request_id": batch[0]["request_id"], "reward": 250.0}])

    arms = {a["name"]: a for a in fast.experiment(eid)["arms"]}
    for arm, xs in rewards.items():
        low, high = stats.t.interval(0.95, len(xs) - 1, loc=np.mean(xs), scale=stats.sem(xs))
        assert arms[arm]["mean"] == pytest.approx(np.mean(xs))
        assert arms[arm]["interval"] == pytest.approx([low, high])
    base = np.mean(rewards["control"])
    assert arms["new"]["lift"] == pytest.approx(np.mean(rewards["new"]) / base - 1)
    _sequential(arms["new"], rewards["new"], rewards["control"], expected_lift=0.1)
