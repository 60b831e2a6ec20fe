"""``modelyard demo --continuous``: the closed loop, on payments whose fraud pattern shifts.

Each stage prints what happened and why:

1. **train**: a model on 150 days of charges, approved into production by a person;
2. **serve**: ordinary traffic is scored, and sampled into the production log;
3. **drift**: a fraud ring takes hold (wallet charges, larger amounts): new data lands and the
   traffic shifts; monitoring sees it, and the pipeline's drift trigger fires;
4. **retrain**: the pipeline validates the data, trains a candidate, validates it against
   production on the same rows and puts it in shadow;
5. **shadow**: the shadow scores the same traffic; once its labels arrive, the shadow report
   shows the candidate better;
6. **promote**: a person approves it, and serving switches while traffic flows, without a
   failed request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console

from modelyard.client import Client
from modelyard.errors import ModelyardError
from modelyard.server import EmbeddedServer
from modelyard.settings import Settings
from modelyard.synthetic import example_request, write_payments

MODEL = "fraud-continuous"
PIPELINE = "fraud-retrain"
BATCH = 250  # rows per predict request


@dataclasses.dataclass
class Loop:
    """What the stages share: the server's client, where to print, and the data."""

    client: Client
    console: Console
    data: Path  # the payments folder the model and the pipeline read
    rows: int
    timeout: float

    def say(self, stage: str, text: str) -> None:
        self.console.print(f"[bold cyan]{stage:>8}[/]  {text}")


def run_continuous(home: Path, *, rows: int, console: Console, timeout: float = 900) -> bool:
    """Run the loop end to end; True if every stage did what it should."""
    home = home.resolve()
    data = home / "data" / "payments"
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("*.parquet"):
        old.unlink()  # the loop starts from the world before the shift, every time
    today = dt.datetime.now(dt.UTC).replace(tzinfo=None, hour=0, minute=0, second=0,
                                            microsecond=0)
    write_payments(data / "history.parquet", rows=rows, merchants=200, seed=1,
                   start=today - dt.timedelta(days=180), days=150)
    settings = Settings.load(home=home, data_roots=[home / "data"], concurrency=2,
                             scheduler_interval=1.0, trigger_check_interval=2.0)
    with EmbeddedServer(settings) as server, Client(server.url, timeout=60) as client:
        loop = Loop(client, console, data, rows, timeout)
        loop.say("server", f"embedded server on {server.url}, scheduler on")
        _train(loop, today)
        _serve(loop)
        _drift(loop, today)
        candidate = _retrain(loop)
        better = _shadow(loop, candidate)
        switched = _promote(loop, candidate)
    return better and switched


def _request(data: str, start: str, end: str) -> dict[str, Any]:
    request = example_request(data)
    request["metadata"] = {**request["metadata"], "model_name": MODEL}  # type: ignore[dict-item]
    request["train"] = {**request["train"], "custom_params": {  # type: ignore[dict-item]
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "max_iter": 60,
        "max_depth": 4}}
    request["filters"] = []  # every country's charges: the traffic the model will see
    request["holdout_sampling"] = {"sampling_function": "DATE_RANGE", "date_range_sampling": {
        "date_column": "created_at", "start_date": start, "end_date": end}}
    return request


def pipeline_spec() -> dict[str, Any]:
    """The retraining pipeline: validate the data, train, validate against production, shadow.
    Its train step's holdout is the last two weeks, relative to the day it runs."""
    return {
        "name": PIPELINE,
        "model": MODEL,
        "description": "retrain the fraud model when its traffic drifts",
        "steps": [
            {"name": "validate", "type": "validate_data", "with": {
                "path": "payments", "date_column": "created_at", "min_rows": 1_000,
                "label": "has_fraud_dispute", "min_positives": 20, "max_age": "2d",
                "columns": {"charge_amount": {"min": 0, "max_null_rate": 0.01},
                            "charge_type": {"nullable": False}}}},
            {"name": "train", "type": "train", "needs": ["validate"],
             "with": _request("payments", "-14d", "today+1d")},
            {"name": "validate_model", "type": "validate_model", "needs": ["train"]},
            {"name": "deploy", "type": "deploy", "needs": ["validate_model"],
             "with": {"to": "shadow"}},
        ],
        "triggers": [{"type": "drift", "psi": 0.2, "top_k": 3, "window": "1d",
                      "min_rows": 500, "debounce": "1h"}],
    }


def _train(loop: Loop, today: dt.datetime) -> None:
    client = loop.client
    job_id = client.train(_request("payments", "-60d", "-30d"))
    result = client.wait(job_id, loop.timeout)["result"]
    auc = result["metrics"].get("roc_auc")
    client.approve(MODEL, 1, comment="the first fraud model", user="risk-lead")
    loop.say("train", f"version 1 trained on {loop.rows:,} charges of the last 150 days "
             f"(holdout AUC {auc:.3f}); a person approved it into production")
    client.create_pipeline(pipeline_spec())
    loop.say("pipeline", f"{PIPELINE}: validate_data -> train -> validate_model -> deploy "
             "(to shadow); trigger: drift, PSI over 0.2 on any of the 3 most important "
             "features over the last day")


def _traffic(path: Path, rows: int, offset: int = 0) -> tuple[list[dict[str, Any]], list[bool]]:
    """``rows`` charges of a file as predict rows, and their labels."""
    table = pq.read_table(path).slice(offset, rows)
    features = example_request("x")["train"]["classifier_features"]  # type: ignore[index]
    frame = table.to_pandas()
    return (frame[list(features)].to_dict("records"),
            frame["has_fraud_dispute"].astype(bool).tolist())


def _predict(client: Client, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answers = []
    for i in range(0, len(rows), BATCH):
        answers.append(client.predict(MODEL, rows[i:i + BATCH]))
    return answers


def _drifting(loop: Loop, stage: str) -> None:
    report = loop.client.monitoring(MODEL, window="1d")
    top = ", ".join(f"{f['name']} PSI {f['psi']:.2f} ({f['band']})"
                    for f in report["features"][:3])
    loop.say(stage, f"monitoring over {report['rows']:,} logged rows: {top}; predictions "
             f"PSI {report['prediction']['psi']:.2f}")


def _serve(loop: Loop) -> None:
    rows, _ = _traffic(loop.data / "history.parquet", 1_500, offset=loop.rows - 1_500)
    answers = _predict(loop.client, rows)
    loop.say("serve", f"{len(rows):,} ordinary charges scored in {len(answers)} requests by "
             f"version {answers[-1]['version']}")
    _drifting(loop, "monitor")


def _drift(loop: Loop, today: dt.datetime) -> None:
    recent = write_payments(loop.data / "recent.parquet", rows=max(loop.rows // 3, 8_000),
                            merchants=200, seed=2, start=today - dt.timedelta(days=30),
                            days=30, shift=1.0)
    loop.say("drift", "a fraud ring takes hold: wallet charges and larger amounts; 30 days "
             f"of new charges land in {recent.name}")
    rows, _ = _traffic(recent, 4_500)
    _predict(loop.client, rows)
    _drifting(loop, "monitor")
    deadline = time.monotonic() + loop.timeout
    while not (runs := loop.client.pipeline_runs(pipeline=PIPELINE)):
        if time.monotonic() > deadline:
            raise TimeoutError("the drift trigger did not fire")
        time.sleep(0.5)
    reason = runs[0]["reason"]
    loop.say("trigger", f"{reason.get('trigger')} fired: {reason.get('summary')}; "
             f"run {runs[0]['run_id']} started")


def _retrain(loop: Loop) -> int:
    run_id = loop.client.pipeline_runs(pipeline=PIPELINE)[0]["run_id"]
    shown: set[tuple[str, str]] = set()

    def progress(run: dict[str, Any]) -> None:
        for step in run["steps"]:
            key = (step["name"], step["state"])
            if key not in shown and step["state"] not in ("pending", "waiting"):
                shown.add(key)
                loop.say("pipeline", f"{step['name']}: {step['state']}"
                         + (f" ({step['summary']})" if step.get("summary") else ""))

    run = loop.client.wait_pipeline_run(run_id, loop.timeout, on_change=progress)
    progress(run)
    if run["state"] != "succeeded":
        raise ModelyardError(f"the retraining run {run_id} {run['state']}: {run.get('error')}")
    deployed = next(s for s in run["steps"] if s["name"] == "deploy")["outputs"]
    candidate = int(deployed["versions"]["*"])
    version = loop.client.version(MODEL, candidate)
    champion = (version.get("evidence") or {}).get("champion") or {}
    loop.say("validate", f"on the same {version['metrics']['holdout_rows']:,} holdout rows (the "
             f"last two weeks): candidate version {candidate} AUC "
             f"{version['metrics']['roc_auc']:.3f}, production version "
             f"{champion.get('version')} AUC {champion.get('metrics', {}).get('roc_auc', 0):.3f}")
    return candidate


def _shadowed(loop: Loop, candidate: int) -> None:
    """Wait until serving scores ``candidate`` as a shadow (it reloads the registry's routes
    within a second or so of a change)."""
    probe, _ = _traffic(loop.data / "recent.parquet", 20)
    deadline = time.monotonic() + 60
    while not any(s["shadow_version"] == candidate
                  for s in loop.client.shadow_report(MODEL)["shadows"]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"serving did not start scoring version {candidate} in shadow")
        loop.client.predict(MODEL, probe)
        time.sleep(0.5)


def _shadow(loop: Loop, candidate: int) -> bool:
    _shadowed(loop, candidate)
    rows, labels = _traffic(loop.data / "recent.parquet", 2_000, offset=4_500)
    answers = _predict(loop.client, rows)
    posted = [{"request_id": a["request_id"], "row": i, "label": float(label)}
              for n, a in enumerate(answers)
              for i, label in enumerate(labels[n * BATCH:(n + 1) * BATCH])]
    loop.client.add_labels(MODEL, posted)
    report = loop.client.shadow_report(MODEL)
    entry = next(s for s in report["shadows"] if s["shadow_version"] == candidate)
    better = (entry["shadow_auc"] or 0.0) > (entry["production_auc"] or 0.0)
    loop.say("shadow", f"on {entry['labelled_rows']:,} labelled charges of the same traffic: "
             f"production AUC {entry['production_auc']:.3f}, shadow version {candidate} AUC "
             f"{entry['shadow_auc']:.3f}: {'better' if better else 'not better'}")
    return better


def _promote(loop: Loop, candidate: int) -> bool:
    rows, _ = _traffic(loop.data / "recent.parquet", BATCH, offset=6_500)
    versions: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with Client(loop.client.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    versions.append(int(client.predict(MODEL, rows)["version"]))
                except Exception as exc:  # counted: the point is that there are none
                    failures.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    time.sleep(1.0)
    loop.client.approve(MODEL, candidate, comment="better than production in shadow",
                        user="risk-lead")
    deadline = time.monotonic() + 60
    while candidate not in versions[-5:] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=30)
    switched = candidate in versions and not failures
    loop.say("promote", f"a person approved version {candidate}; {len(versions):,} requests "
             f"during the switch, served by versions {sorted(set(versions))}, "
             f"{len(failures)} failed" + (f" ({failures[0]})" if failures else ""))
    return switched
