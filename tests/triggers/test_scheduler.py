"""The scheduler through a real server: each trigger on controlled data, the reason a run
records, debouncing, and a restart that neither loses nor doubles a scheduled run.

One server for the module (SQLite: the scheduler's logic is the same on both backends, and the
conditional claim it relies on is plain SQL), looking every 0.3 s and checking events every
second. The restart test comes last: it stops and starts that server.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from modelyard.client import Client
from modelyard.synthetic import example_request, payments_table, write_payments
from tests.conftest import ServerProcess, scrape, start_server, wait_until

FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]


@pytest.fixture(scope="module")
def sched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("scheduler"), "sqlite", "--concurrency", "2",
                        "--scheduler-interval", "0.3", "--trigger-check-interval", "1")
    yield proc
    proc.stop()


@pytest.fixture
def client(sched: ServerProcess) -> Iterator[Client]:
    with sched.client() as c:
        yield c


def _name() -> str:
    return f"tr-{uuid.uuid4().hex[:8]}"


def _request(model: str, path: str = "tiny.parquet") -> dict[str, Any]:
    request = example_request(path)
    request["metadata"] = {**request["metadata"], "model_name": model}  # type: ignore[dict-item]
    request["train"] = {**request["train"], "custom_params": {  # type: ignore[dict-item]
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "max_iter": 20}}
    request["holdout_sampling"] = {"sampling_function": "RANDOM_FRACTION",
                                   "random_fraction_sampling": {"fraction": 0.3, "seed": 0}}
    return request


def _check_step(name: str) -> dict[str, Any]:
    """A quick step for runs whose contents do not matter here."""
    return {"name": "check", "type": "validate_data", "with": {"path": "tiny.parquet",
                                                               "min_rows": 10}}


def _runs(client: Client, pipeline: str) -> list[dict[str, Any]]:
    return sorted(client.pipeline_runs(pipeline=pipeline), key=lambda r: r["created_at"])


def _trigger(client: Client, pipeline: str, key: str) -> dict[str, Any]:
    return next(t for t in client.pipeline_triggers(pipeline)["triggers"] if t["trigger"] == key)


def _ended(client: Client, pipeline: str, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    """Wait until the pipeline has ``count`` runs, all ended; return them, oldest first."""
    wait_until(lambda: len(runs := _runs(client, pipeline)) >= count and all(
        r["state"] in ("succeeded", "failed", "cancelled") for r in runs), timeout)
    return _runs(client, pipeline)


def test_new_files_under_the_source_start_a_run_that_says_which(
        sched: ServerProcess, client: Client) -> None:
    name = _name()
    folder = sched.home / "data" / name
    write_payments(folder / "part-0.parquet", rows=2_000, merchants=20, seed=1)
    client.create_pipeline({
        "name": name,
        "steps": [{"name": "train", "type": "train", "with": _request(name, name)}],
        "triggers": [{"type": "new_data", "files": True, "debounce": "1s"}]})

    first = _ended(client, name, 1)[0]  # no version yet: the first check fires
    assert first["state"] == "succeeded", first
    assert first["reason"]["trigger"] == "new_data"
    assert "has been trained yet" in first["reason"]["summary"]
    wait_until(lambda: (_trigger(client, name, "new_data")["last_check"] or {}).get(
        "summary", "").startswith("nothing new since version 1"), 30)

    write_payments(folder / "part-1.parquet", rows=1_000, merchants=20, seed=2)
    second = _ended(client, name, 2)[1]
    assert second["reason"]["figures"]["new_files"] == ["part-1.parquet"]
    assert second["reason"]["summary"].startswith("1 new files under ")
    assert second["started_by"] == "trigger:new_data"

    # The source vanished: the check fails saying so, without the server's own paths.
    shutil.rmtree(folder)
    wait_until(lambda: _trigger(client, name, "new_data")["last_error"], 30)
    error = _trigger(client, name, "new_data")["last_error"]
    assert f"data path {name} does not exist (looked in: <data root>)" in error
    assert str(sched.home) not in error


def _production_model(client: Client, model: str) -> None:
    client.wait(client.train(_request(model)), 300)
    client.approve(model, 1, comment="first", user="someone")


def _shifted_traffic(client: Client, model: str, rows: int) -> tuple[list[str], list[float]]:
    """Score charges of a world after the shift; return the request ids and the scores."""
    frame = payments_table(rows, 20, seed=5, shift=1.0).to_pandas()
    ids, scores = [], []
    for start in range(0, rows, 100):
        answer = client.predict(model, frame[FEATURES].iloc[start:start + 100].to_dict("records"))
        ids += [answer["request_id"]] * len(answer["scores"])
        scores += answer["scores"]
    return ids, scores


def test_drift_and_decay_start_runs_with_their_figures_and_a_lasting_drift_is_debounced(
        client: Client) -> None:
    model, name = _name(), _name()
    _production_model(client, model)
    client.create_pipeline({
        "name": name, "model": model, "steps": [_check_step(name)],
        "triggers": [
            {"type": "drift", "psi": 0.2, "top_k": 3, "window": "1d", "min_rows": 300},
            {"type": "decay", "margin": 0.05, "window": "1d", "min_labels": 200}]})
    wait_until(lambda: _trigger(client, name, "drift")["last_check"] is not None, 30)
    assert not _trigger(client, name, "drift")["last_check"]["fire"]  # no traffic yet

    ids, scores = _shifted_traffic(client, model, 600)
    drift = _ended(client, name, 1)[0]["reason"]
    assert drift["trigger"] == "drift" and drift["figures"]["window"] == "1d"
    assert drift["figures"]["rows"] >= 600
    drifted = [f for f in drift["figures"]["features"] if f["psi"] > 0.2]
    assert drifted and {f["name"] for f in drifted} <= set(FEATURES)
    assert all(f["name"] in drift["summary"] for f in drifted)

    # Labels that contradict every score: the metric collapses against the holdout figure.
    median = sorted(scores)[len(scores) // 2]
    rows_of: dict[str, int] = {}
    labels = []
    for request_id, score in zip(ids, scores, strict=True):
        row = rows_of.get(request_id, 0)
        rows_of[request_id] = row + 1
        labels.append({"request_id": request_id, "row": row, "label": float(score < median)})
    client.add_labels(model, labels)
    decay = next(r for r in _ended(client, name, 2) if r["reason"]["trigger"] == "decay")
    figures = decay["reason"]["figures"]
    assert figures["metric"] == "roc_auc" and figures["labelled_rows"] == 600
    assert figures["value"] < figures["holdout_value"] - 0.05
    assert figures["drop"] == pytest.approx(figures["holdout_value"] - figures["value"])

    # The drift still holds, and is checked again every second: it starts no second run.
    wait_until(lambda: (_trigger(client, name, "drift")["last_skip"] or "").startswith(
        "debounced until"), 30)
    drift_state = _trigger(client, name, "drift")
    assert drift_state["fired"] == 1 and drift_state["last_check"]["fire"]
    assert [r["reason"]["trigger"] for r in _runs(client, name)].count("drift") == 1


def test_a_per_tenant_trigger_watches_and_retrains_each_tenant_alone(client: Client) -> None:
    model, name = _name(), _name()
    fleet = _request(model)
    fleet["data"]["features"]["names"].append("merchant_id")
    fleet["tenants"] = {"column": "merchant_id", "min_training_rows": 150, "global_model": False}
    parent = client.train(fleet)
    client.wait(parent, 300)
    tenants = sorted(t["tenant"] for t in client.fleet(parent)["tenants"]
                     if t["level"] == "tenant")
    assert len(tenants) >= 2, client.fleet(parent)
    client.create_pipeline({
        "name": name, "model": model,
        "steps": [{"name": "train", "type": "train", "with": fleet}],
        "triggers": [{"type": "drift", "psi": 0.2, "top_k": 3, "window": "1d", "min_rows": 200,
                      "per_tenant": True}]})
    drifted = tenants[0]
    frame = payments_table(400, 20, seed=5, shift=1.0).to_pandas()
    for start in range(0, 400, 100):
        client.predict(model, frame[FEATURES].iloc[start:start + 100].to_dict("records"),
                       tenant=drifted)
    run = _ended(client, name, 1)[0]
    assert run["tenant"] == drifted and run["reason"]["tenant"] == drifted
    assert run["state"] == "succeeded", run
    states = {t["tenant"]: t for t in client.pipeline_triggers(name)["triggers"]}
    assert set(states) == set(tenants)  # one state per tenant with a model of its own
    quiet = [t for t in tenants if t != drifted]
    assert all(states[t]["fired"] == 0 for t in quiet)
    assert all("under min_rows" in states[t]["last_check"]["summary"] for t in quiet)
    steps = client.pipeline_run(run["run_id"])["steps"]
    assert steps[0]["outputs"]["versions"].keys() == {drifted}


def _due(client: Client, name: str) -> dt.datetime | None:
    due = _trigger(client, name, "schedule")["next_due_at"]
    return dt.datetime.fromisoformat(due) if due else None


def test_one_pipeline_whose_request_file_went_bad_stops_no_other_pipelines_triggers(
        sched: ServerProcess, client: Client) -> None:
    # The scheduler reads each train step's request file at every tick; a file replaced by
    # bytes that are not text made the whole tick raise, for every pipeline.
    name = _name()
    request_file = sched.home / "data" / f"{name}.yaml"
    request_file.write_text(yaml.safe_dump(_request(name)))
    client.create_pipeline({"name": f"{name}-bad", "steps": [
        {"name": "train", "type": "train", "with": {"request_file": request_file.name}}],
        "triggers": [{"type": "schedule", "cron": "0 3 * * 1"}]})
    request_file.write_bytes(b"\x80\x81 not a request \xff")
    client.create_pipeline({"name": name, "model": name, "steps": [_check_step(name)],
                            "triggers": [{"type": "new_data", "every": "1s"}]})
    (run,) = _ended(client, name, 1, timeout=60)
    assert run["started_by"] == "trigger:new_data"


def test_trigger_firings_and_a_failing_pipeline_show_in_the_metrics(
        sched: ServerProcess, client: Client) -> None:
    name = _name()
    failing = {"name": "check", "type": "validate_data",
               "with": {"path": "tiny.parquet", "min_rows": 10**9}}
    client.create_pipeline({"name": name, "model": name, "steps": [failing],
                            "triggers": [{"type": "new_data", "every": "1s"}]})
    (run,) = _ended(client, name, 1, timeout=60)
    assert run["state"] == "failed", run

    def shown() -> bool:  # the store's figures are read at most once a second
        metrics = scrape(sched.url)
        return (metrics.value("modelyard_trigger_firings_total", pipeline=name,
                              trigger="new_data") == 1
                and metrics.value("modelyard_pipeline_runs", pipeline=name, state="failed") == 1
                and metrics.value("modelyard_pipeline_failing", pipeline=name) == 1)

    wait_until(shown, 10)


def test_a_restart_neither_loses_nor_doubles_a_scheduled_run(
        sched: ServerProcess, client: Client) -> None:
    name = _name()
    client.create_pipeline({"name": name, "steps": [_check_step(name)],
                            "triggers": [{"type": "schedule", "cron": "* * * * * */6"}]})
    _ended(client, name, 1)
    # Stop between two due times, with no run under way.
    wait_until(lambda: (due := _due(client, name)) is not None
               and due - dt.datetime.now(dt.UTC) > dt.timedelta(seconds=2)
               and all(r["state"] != "running" and r["state"] != "queued"
                       for r in _runs(client, name)), 60)
    before = {r["run_id"] for r in _runs(client, name)}
    missed = _due(client, name)
    assert missed is not None
    sched.stop()
    time.sleep(max(0.0, (missed - dt.datetime.now(dt.UTC)).total_seconds()) + 7)  # two missed
    restarted = dt.datetime.now(dt.UTC)
    sched.start()
    with sched.client() as again:
        wait_until(lambda: len(_runs(again, name)) > len(before), 60)
        time.sleep(2)  # time to start a second catch-up run, were there one
        runs = _runs(again, name)
    scheduled = [dt.datetime.fromisoformat(r["reason"]["figures"]["scheduled_for"])
                 for r in runs]
    assert len(scheduled) == len(set(scheduled))  # no due time started twice
    caught_up = [s for r, s in zip(runs, scheduled, strict=True)
                 if r["run_id"] not in before and s < restarted]
    assert caught_up == [missed]  # the missed due time ran once, not once per missed time
