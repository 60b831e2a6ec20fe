"""Assignment through the real server: a unit keeps its arm, the split follows the weights
within binomial bounds, no unit means a random arm, and the answer and the production log
say which experiment and arm answered."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest
from scipy import stats

from modelyard.client import Client
from tests.conftest import ServerProcess
from tests.experiments.conftest import rows

N = 300


@pytest.fixture(scope="module")
def ab(fast_server: ServerProcess, fast_model: str) -> Iterator[tuple[str, dict[str, object]]]:
    with fast_server.client() as client:
        experiment = client.create_experiment({
            "model_name": fast_model, "type": "ab", "hypothesis": "v2 converts more",
            "arms": [{"name": "control", "version": 1}, {"name": "new", "version": 2}],
            "weights": [0.7, 0.3]})
        yield fast_model, experiment
        client.stop_experiment(str(experiment["id"]), reason="module over", actor="tests")


def test_a_unit_keeps_its_arm_and_the_split_follows_the_weights(
        fast: Client, ab: tuple[str, dict[str, object]]) -> None:
    name, experiment = ab
    first = {f"customer-{i}": fast.predict(name, rows(), unit=f"customer-{i}")
             for i in range(N)}
    assert {a["experiment"] for a in first.values()} == {experiment["id"]}
    for unit, answer in list(first.items())[:30]:  # again, later: the same arm
        again = fast.predict(name, rows(), unit=unit)
        assert (again["arm"], again["version"]) == (answer["arm"], answer["version"])
    new = sum(a["arm"] == "new" for a in first.values())
    lo, hi = stats.binom.ppf([0.0005, 0.9995], N, 0.3)
    assert lo <= new <= hi, f"{new} of {N} units on 'new', outside [{lo}, {hi}]"
    assert all(a["version"] == (2 if a["arm"] == "new" else 1) for a in first.values())


def test_without_a_unit_the_arm_is_random(fast: Client,
                                          ab: tuple[str, dict[str, object]]) -> None:
    name, _ = ab
    arms = [fast.predict(name, rows())["arm"] for _ in range(200)]
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 200, 0.3)
    assert lo <= arms.count("new") <= hi


def test_the_production_log_and_the_scorecard_count_each_arm(
        fast_server: ServerProcess, fast: Client, ab: tuple[str, dict[str, object]]) -> None:
    name, experiment = ab
    answers = [fast.predict(name, rows(2), unit=f"log-{i}") for i in range(20)]
    card = fast.experiment(str(experiment["id"]))  # flushes this server's counts
    served = {a["name"]: a["requests"] for a in card["arms"]}
    assert sum(served.values()) >= 20
    fast.add_labels(name, [{"request_id": answers[0]["request_id"], "label": 1.0}])
    parts = list((fast_server.home / "production").glob(f"model={name}/*/part-*.parquet"))
    logged = pq.ParquetDataset([str(p) for p in parts]).read().to_pylist()
    by_request = {r["request_id"]: r for r in logged}
    for answer in answers:
        row = by_request[answer["request_id"]]
        assert (row["experiment"], row["arm"]) == (experiment["id"], answer["arm"])


def test_shadows_keep_scoring_beside_an_experiment(
        fast: Client, ab: tuple[str, dict[str, object]]) -> None:
    name, _ = ab
    fast.set_stage(name, 3, "shadow", actor="kelley", reason="beside the experiment")
    try:
        answers = [fast.predict(name, rows(2), unit=f"shadowed-{i}") for i in range(6)]
        assert {a["arm"] for a in answers} <= {"control", "new"}
        # One entry per (shadow, the arm's version that answered), each on the same rows.
        report = fast.shadow_report(name)["shadows"]
        assert {r["shadow_version"] for r in report} == {3}
        assert {r["production_version"] for r in report} <= {1, 2}
        assert sum(r["rows"] for r in report) >= 12
    finally:
        fast.set_stage(name, 3, "candidate", actor="kelley", reason="done")
