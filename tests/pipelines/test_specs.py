"""Bad pipelines are refused with a 422 naming the step."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml

from modelyard.client import Client
from tests.conftest import ServerProcess
from tests.pipelines.conftest import train_with


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("steps", "message"), [
    ([{"name": "a", "type": "train", "needs": ["b"]},
      {"name": "b", "type": "validate_model", "needs": ["a"]}], "step 'a' is in a cycle"),
    ([{"name": "a", "type": "validate_model", "needs": ["ghost"]}],
     "step 'a' needs 'ghost', which is no step of this pipeline"),
    ([{"name": "a", "type": "sing"}], "step 'a': unknown type 'sing'"),
    ([{"name": "a", "type": "deploy"}, {"name": "a", "type": "deploy"}],
     "step 'a' is defined twice"),
    ([{"name": "a", "type": "deploy", "with": {"to": "moon"}}], "step 'a': .*with.to"),
])
def test_bad_specs_are_422_naming_the_step(server: ServerProcess, steps: list[dict[str, Any]],
                                           message: str) -> None:
    answer = httpx.post(f"{server.url}/pipelines", json={"name": "bad", "steps": steps})
    assert answer.status_code == 422, answer.text
    import re

    assert re.search(message, answer.json()["message"]), answer.json()["message"]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_train_step_is_checked_at_create(client: Client) -> None:
    bad = train_with("m")
    bad["metadata"] = {**bad["metadata"], "model_name": "a/b"}
    answer = httpx.post(f"{client.url}/pipelines", json={"name": "p", "steps": [
        {"name": "fit", "type": "train", "with": bad}]})
    assert answer.status_code == 422 and "step 'fit'" in answer.json()["message"]
    assert "metadata.model_name" in answer.json()["message"]


def test_the_readme_pipeline_is_a_valid_spec() -> None:
    from modelyard.pipelines.loading import parse_pipeline
    from tests.test_readme import readme_block

    spec = parse_pipeline(yaml.safe_load(readme_block("Pipelines", "yaml", containing="steps:")))
    assert [s.name for s in spec.steps] == ["fit", "check", "ship", "report"]
    assert spec.triggers[0].type == "schedule"
    triggers = yaml.safe_load(readme_block("Pipelines", "yaml", containing="type: drift"))
    parsed = parse_pipeline({**spec.to_json(), **triggers}).triggers
    assert [t.type for t in parsed] == ["schedule", "new_data", "drift", "decay"]


def test_a_run_of_one_tenant_trains_that_tenant_of_the_fleet_alone() -> None:
    from modelyard.errors import RequestError as Refused
    from modelyard.pipelines.server_steps import narrowed
    from modelyard.request.loading import parse_request

    fleet = parse_request({**train_with("m"), "tenants": {"column": "merchant_id"}})
    assert narrowed(fleet, "m-7").tenants.include == ["m-7"]  # type: ignore[union-attr]
    assert narrowed(fleet, None) is fleet
    with pytest.raises(Refused, match="run is for tenant 'm-7', but the train request of 'm' "
                                      "has no tenants block"):
        narrowed(parse_request(train_with("m")), "m-7")
