"""Retention through a real server whose controller prunes finished experiments 2 s after they
ended (``--experiment-retention-days``): their assignments and outcomes go, their final
scorecard stays; a running experiment keeps everything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.client import Client
from modelyard.errors import ConfigurationError
from modelyard.settings import Settings
from tests.conftest import ServerProcess, start_server, wait_until
from tests.experiments.conftest import rows, train_versions

RETENTION_DAYS = 2 / 86400


@pytest.fixture(scope="module")
def pruning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    proc: ServerProcess = start_server(
        tmp_path_factory.mktemp("retention"), "sqlite", "--experiment-interval", "0.2",
        "--experiment-retention-days", str(RETENTION_DAYS))
    with proc.client() as client:
        yield client
    proc.stop()


def _served(client: Client, model: str, experiment_id: str, n: int) -> list[dict[str, object]]:
    answers = [client.predict(model, rows(), unit=f"u{i}") for i in range(n)]
    assert {a["experiment"] for a in answers} == {experiment_id}
    added = client.add_outcomes([{"request_id": a["request_id"], "reward": float(i % 2)}
                                 for i, a in enumerate(answers)])
    assert added["matched"] == n
    return answers


def test_a_finished_experiment_is_pruned_and_keeps_its_final_scorecard(
        pruning: Client) -> None:
    model = train_versions(pruning, ["Tiny", "Tiny"])
    arms = [{"name": "control", "version": 1}, {"name": "new", "version": 2}]
    finished = pruning.create_experiment({"model_name": model, "type": "ab", "arms": arms})
    answers = _served(pruning, model, finished["id"], 20)
    before = pruning.stop_experiment(finished["id"], reason="enough", actor="kelley")
    assert before["pruned_at"] is None
    card = pruning.experiment(finished["id"])
    running = pruning.create_experiment({"model_name": model, "type": "ab", "arms": arms})
    kept = _served(pruning, model, running["id"], 10)

    wait_until(lambda: pruning.experiment(finished["id"])["pruned_at"] is not None)
    pruned = pruning.experiment(finished["id"])
    assert pruned["state"] == "stopped"
    # The figures are the ones it ended with, though its outcomes are gone.
    assert pruned["arms"] == card["arms"] and sum(a["outcomes"] for a in pruned["arms"]) == 20
    again = pruning.add_outcomes([{"request_id": a["request_id"], "row": 1, "reward": 1.0}
                                  for a in answers[:5]])
    assert (again["unknown"], again["matched"]) == (5, 0)  # its assignments are gone too
    # The running experiment keeps its assignments: a second row's outcome still matches.
    still = pruning.add_outcomes([{"request_id": kept[0]["request_id"], "row": 1,
                                   "reward": 1.0}])
    assert still["matched"] == 1 and pruning.experiment(running["id"])["pruned_at"] is None


def test_the_retention_setting_reads_its_variable_and_refuses_a_non_positive_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings.load(home=str(tmp_path)).experiment_retention_days == 90
    monkeypatch.setenv("MODELYARD_EXPERIMENT_RETENTION_DAYS", "7")
    assert Settings.load(home=str(tmp_path)).experiment_retention_days == 7
    assert Settings.load(home=str(tmp_path),
                         experiment_retention_days=1.5).experiment_retention_days == 1.5
    with pytest.raises(ConfigurationError, match=r"--experiment-retention-days \(MODELYARD_"
                       r"EXPERIMENT_RETENTION_DAYS\) must be a positive number of days, got 0"):
        Settings.load(home=str(tmp_path), experiment_retention_days=0)
