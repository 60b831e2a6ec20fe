"""Definitions through the real server: bad ones are 422s naming the field, and the database
allows one running experiment per (model, tenant) on every backend."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml

from modelyard.client import Client
from modelyard.errors import Conflict
from tests.conftest import ServerProcess
from tests.experiments.conftest import train_versions


def _arms(*versions: int) -> list[dict[str, Any]]:
    return [{"name": f"v{v}", "version": v} for v in versions]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("body", "field", "message"), [
    ({"type": "ab", "arms": _arms(1, 2), "weights": [1.0]}, "weights",
     "one non-negative weight per arm (2)"),
    ({"type": "rollout", "arms": _arms(1, 2), "ramp": [0.1, 0.5]}, "ramp",
     "rising shares in (0, 1] that end at 1"),
    ({"type": "bandit", "arms": _arms(1, 2, 3), "min_share": 0.4}, "min_share",
     "more than all the traffic"),
    ({"type": "ab", "arms": _arms(1, 2), "control": "v9"}, "control", "is not an arm"),
    ({"type": "ab", "arms": _arms(1, 1)}, "arms", "names must differ"),
    ({"type": "ab", "arms": _arms(1, 2), "guardrails": {"max_error_rate": 2}},
     "max_error_rate", "less than or equal to 1"),
    ({"type": "bandit", "arms": _arms(1, 2), "reward": {"kind": "continuous", "lo": 1,
                                                         "hi": 0}}, "reward.hi", "above"),
])
def test_bad_definitions_are_refused_naming_the_field(server: ServerProcess,
                                                      body: dict[str, Any], field: str,
                                                      message: str) -> None:
    answer = httpx.post(f"{server.url}/experiments", json={"model_name": "nothing-yet", **body})
    assert answer.status_code == 422, answer.text
    assert field in answer.text and message in answer.text


def test_one_running_experiment_per_model_and_tenant(server: ServerProcess,
                                                     client: Client) -> None:
    name = train_versions(client, ["Tiny", "Tiny"])
    unknown = httpx.post(f"{server.url}/experiments", json={
        "model_name": name, "type": "ab", "arms": _arms(1, 7)})
    assert unknown.status_code == 422
    assert f"arms[1].version: version 7 of {name!r} (tenant '*') is not registered" in (
        unknown.json()["message"])
    first = client.create_experiment({"model_name": name, "type": "ab", "arms": _arms(1, 2)})
    with pytest.raises(Conflict, match=f"already has a running experiment \\({first['id']}\\)"):
        client.create_experiment({"model_name": name, "type": "bandit", "arms": _arms(2, 1)})
    client.stop_experiment(first["id"], reason="made room", actor="kelley")
    second = client.create_experiment({"model_name": name, "type": "bandit",
                                       "arms": _arms(2, 1)})
    assert second["state"] == "running"
    listed = client.experiments(name)
    assert [(e["id"], e["state"]) for e in listed] == [(second["id"], "running"),
                                                       (first["id"], "stopped")]
    (event, *_) = client.events(name)
    assert event["reason"] == f"experiment {first['id']} stopped: made room"


def test_the_readme_experiment_is_a_valid_definition() -> None:
    from modelyard.experiments.spec import ExperimentSpec
    from tests.test_readme import readme_block

    spec = ExperimentSpec.model_validate(yaml.safe_load(
        readme_block("Online experiments", "yaml", containing="type: bandit")))
    assert (spec.type, spec.control_arm, spec.treatments) == ("bandit", "current", ["new"])
    assert spec.initial_weights() == [0.5, 0.5]
