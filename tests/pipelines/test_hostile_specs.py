"""What a hostile or careless client sends to POST /pipelines: each is a 422 naming the field
and the bad value, never a 500, and never a spec the scheduler would fail on at every tick
(SQLite: refused before anything is stored)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest
import yaml

from modelyard.client import Client
from tests.conftest import ServerProcess
from tests.pipelines.conftest import train_with

DEPLOY = {"name": "ship", "type": "deploy", "with": {"to": "shadow"}}


def _post(server: ServerProcess, spec: dict[str, Any]) -> httpx.Response:
    # Sent as text: NaN and NUL must reach the server exactly as a client could write them.
    return httpx.post(f"{server.url}/pipelines", content=json.dumps(spec),
                      headers={"content-type": "application/json"}, timeout=30)


def _with_triggers(*triggers: dict[str, Any]) -> dict[str, Any]:
    return {"name": "hostile", "model": "m", "steps": [DEPLOY], "triggers": list(triggers)}


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("spec", "message"), [
    # A NUL reached os.path.realpath (ValueError: a 500) and would reach the worker's exec.
    ({"name": "hostile", "steps": [{"name": "c", "type": "command", "command": ["a\x00.sh"]}]},
     r"step 'c': command.0: 'a\\x00.sh' holds a NUL character"),
    ({"name": "hostile", "steps": [{"name": "c", "type": "command",
                                    "command": ["report.sh", "--x\x00"]}]},
     r"command.1: .* holds a NUL character"),
    ({"name": "hostile", "steps": [{"name": "t", "type": "train",
                                    "with": {"request_file": "a\x00.yaml"}}]},
     r"step 't': request file 'a\\x00.yaml' holds a NUL character"),
    # A data file named as the request file was read as text: UnicodeDecodeError, a 500.
    ({"name": "hostile", "steps": [{"name": "t", "type": "train",
                                    "with": {"request_file": "tiny.parquet"}}]},
     r"step 't': request file <data root>/tiny.parquet is not text .* not a data file"),
    # A version past the registry's 32 bits left the run queued for ever, retrying its lookup.
    ({"name": "hostile", "steps": [{"name": "e", "type": "evaluate", "with": {
        "model_name": "m", "version": 2**31, "sets": [{"name": "s", "path": "tiny.parquet"}]}}]},
     r"step 'e': .*with.version: Input should be less than or equal to 2147483647"),
    ({"name": "hostile", "steps": [{"name": "e", "type": "evaluate", "with": {
        "model_name": "m\x00", "version": 1, "sets": [{"name": "s", "path": "tiny.parquet"}]}}]},
     r"step 'e': .*with.model_name: .*model name 'm\\x00' holds U\+0000"),
    # Neither a program nor PostgreSQL's JSON takes NaN; SQLite stored it.
    ({"name": "hostile", "steps": [{"name": "v", "type": "validate_data", "with": {
        "path": "tiny.parquet", "columns": {"charge_amount": {"min": float("nan")}}}}]},
     r"step 'v': with holds a number that is not finite"),
])
def test_hostile_steps_are_422_naming_the_field(server: ServerProcess, spec: dict[str, Any],
                                                message: str) -> None:
    answer = _post(server, spec)
    assert answer.status_code == 422, answer.text
    assert re.search(message, answer.json()["message"]), answer.json()["message"]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("spec", "message"), [
    # Each of these was stored, and then failed (or never fired) at every scheduler tick.
    (_with_triggers({"type": "schedule", "cron": "0 3 30 2 *"}),
     r"cron: '0 3 30 2 \*' matches no date .* would never fire"),
    (_with_triggers({"type": "drift", "window": "99999w"}),
     r"drift.window: '99999w' must be more than 0 and at most 366 days"),
    (_with_triggers({"type": "decay", "window": "0s"}),
     r"decay.window: '0s' must be more than 0"),
    (_with_triggers({"type": "new_data", "every": "0s"}),
     r"new_data.every: '0s' must be more than 0"),
    (_with_triggers({"type": "drift", "psi": float("inf")}), r"drift.psi"),
    (_with_triggers({"type": "drift", "name": "a\x00"}), r"drift.name"),
    # Two triggers of one name shared one state: one's debounce silenced the other.
    (_with_triggers({"type": "drift"}, {"type": "drift", "psi": 0.5}),
     r"2 triggers are named 'drift' .* give each its own name"),
    ({"name": "hostile", "steps": [DEPLOY], "triggers": [{"type": "drift"}]},
     r"model: trigger 'drift' watches a model, and this pipeline names none"),
])
def test_triggers_the_scheduler_cannot_run_are_refused(server: ServerProcess,
                                                        spec: dict[str, Any],
                                                        message: str) -> None:
    answer = _post(server, spec)
    assert answer.status_code == 422, answer.text
    assert re.search(message, answer.json()["message"]), answer.json()["message"]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_leap_day_schedule_is_still_accepted(server: ServerProcess) -> None:
    answer = _post(server, _with_triggers({"type": "schedule", "cron": "0 3 29 2 *"}))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_request_file_that_went_bad_fails_its_run_naming_it_without_server_paths(
        server: ServerProcess, client: Client) -> None:
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    request_file = server.home / "data" / f"{name}.yaml"
    request_file.write_text(yaml.safe_dump(train_with(name)))
    client.create_pipeline({"name": name, "steps": [
        {"name": "fit", "type": "train", "with": {"request_file": request_file.name}}]})
    request_file.write_bytes(b"\x80\x81 not a request")  # replaced after the create's check
    run = client.wait_pipeline_run(client.run_pipeline(name), timeout=60)
    assert run["state"] == "failed"
    said = f"request file <data root>/{name}.yaml is not text"
    assert said in run["error"]
    # The run's logs show what the server step said as the run's answer does: no server path.
    logs = client.pipeline_logs(run["run_id"], step="fit")
    assert said in logs and str(server.home) not in logs
