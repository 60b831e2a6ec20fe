"""Online serving through the real server: routing with global fallback, the atomic swap under
load, shadow scoring off the request path, the shadow report checked against a direct
computation, and refusal of a model whose bytes do not match its id."""

from __future__ import annotations

import copy
import os
import pickle
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from modelyard.client import Client
from tests.conftest import ServerProcess, scrape, wait_until, with_workflow

FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
# Scoring, the shadow scorer, the shadow and label logs (parquet) and exports do not touch the
# database: those tests run on SQLite alone. Routing, the swap at a promotion, the degraded
# audit and a replica that polls the registry read and write it, and run on every backend.
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _rows(server: ServerProcess, n: int, seed: int = 0) -> list[dict[str, Any]]:
    frame = pd.read_parquet(server.home / "data" / "payments.parquet").sample(n, random_state=seed)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in frame[FEATURES + ["has_fraud_dispute"]].to_dict("records")]


def _model(server: ServerProcess, model_id: str) -> Any:
    hexd = model_id.split(":")[1]
    blob = server.home / "artifacts" / "objects" / "sha256" / hexd[:2] / hexd[2:]
    return pickle.loads(blob.read_bytes())


@pytest.fixture
def model(client: Client, fraud_request: dict[str, Any]) -> dict[str, Any]:
    """A model with v1 in production and v2 a candidate."""
    request = copy.deepcopy(fraud_request)
    name = f"serve-{uuid.uuid4().hex[:8]}"
    request["metadata"]["model_name"] = name
    # A learning rate unique to the test gives model bytes (so content ids) of its own.
    rate = 0.1 + int(uuid.uuid4().hex[:6], 16) * 1e-12
    for max_iter in (10, 40):
        client.wait(client.train(with_workflow(request, "sklearn", max_iter=max_iter,
                                               learning_rate=rate)), 120)
    client.approve(name, 1, user="kelley", comment="first")
    versions = {v["version"]: v for v in client.versions(name)}
    return {"name": name, "v1": versions[1], "v2": versions[2], "request": request}


def _predict(url: str, name: str, rows: list[dict[str, Any]], tenant: str | None = None
             ) -> httpx.Response:
    return httpx.post(f"{url}/predict/{name}", json={"tenant": tenant, "rows": rows}, timeout=30)


def _shadow_report(url: str, name: str) -> dict[str, Any]:
    """The report, once the scorer has scored and logged every request so far: it waits for the
    scorer process (up to a minute), which runs below serving's priority on a busy machine."""
    report: dict[str, Any] = httpx.get(f"{url}/models/{name}/shadow-report", timeout=90).json()
    return report


def test_predict_scores_with_production_and_falls_back_to_global(
    server: ServerProcess, model: dict[str, Any]
) -> None:
    rows = _rows(server, 20)
    answer = _predict(server.url, model["name"], rows, tenant="m00042").json()
    assert answer["version"] == 1 and answer["served_by_tenant"] == "*"
    assert answer["tenant"] == "m00042"
    direct = _model(server, model["v1"]["model_id"]).predict_proba(
        pd.DataFrame(rows)[FEATURES])[:, 1]
    np.testing.assert_allclose(answer["scores"], direct, rtol=1e-9)


@SQLITE
def test_bad_predict_requests_name_the_problem(server: ServerProcess,
                                               model: dict[str, Any]) -> None:
    missing = _predict(server.url, "no-such-model", _rows(server, 1))
    assert missing.status_code == 404 and "no-such-model" in missing.json()["message"]
    row = _rows(server, 1)[0]
    del row["charge_amount"]
    bad = _predict(server.url, model["name"], [row])
    assert bad.status_code == 422
    assert "rows.0: missing feature column 'charge_amount'" in bad.json()["message"]
    empty = httpx.post(f"{server.url}/predict/{model['name']}", json={"rows": []})
    assert empty.status_code == 422 and "rows" in empty.json()["message"]


def test_promotion_swaps_atomically_under_load(server: ServerProcess, client: Client,
                                               model: dict[str, Any]) -> None:
    rows = _rows(server, 1)
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                r = http.post(f"{server.url}/predict/{model['name']}", json={"rows": rows})
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    seen.append(r.json()["version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        while len(seen) < 50:
            threading.Event().wait(0.01)
        client.approve(model["name"], 2, user="kelley", comment="better")
        count = len(seen)
        while len(seen) < count + 200 or 2 not in seen[count:]:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen[0] == 1 and seen[-1] == 2
    first_new = seen.index(2)
    # Per-thread order interleaves, so allow stragglers of requests in flight at the swap.
    assert seen[first_new + 20:].count(1) == 0


@SQLITE
def test_shadow_versions_score_off_the_path_and_report(server: ServerProcess, client: Client,
                                                       model: dict[str, Any]) -> None:
    name = model["name"]
    client.set_stage(name, 2, "shadow", actor="kelley", reason="try it on live traffic")
    rows = _rows(server, 300, seed=3)
    frame = pd.DataFrame(rows)
    answers = [_predict(server.url, name, rows[i:i + 30]).json() for i in range(0, 300, 30)]
    assert {a["version"] for a in answers} == {1}
    production = np.concatenate([a["scores"] for a in answers])
    shadow = _model(server, model["v2"]["model_id"]).predict_proba(frame[FEATURES])[:, 1]

    labels = [{"request_id": a["request_id"], "row": i,
               "label": float(rows[k * 30 + i]["has_fraud_dispute"])}
              for k, a in enumerate(answers) for i in range(len(a["scores"]))]
    # Answered once the scorer has logged the requests so far (as the report below).
    assert httpx.post(f"{server.url}/labels", json={"model_name": name, "labels": labels},
                      timeout=90).json() == {"labels": 300, "matched": 300, "unknown": 0,
                                             "duplicates": 0, "unknown_examples": []}

    report = _shadow_report(server.url, name)
    (entry,) = report["shadows"]
    assert entry["shadow_version"] == 2 and entry["production_version"] == 1
    assert entry["rows"] == entry["labelled_rows"] == 300
    assert entry["correlation"] == pytest.approx(np.corrcoef(production, shadow)[0, 1])
    assert entry["agreement"] == pytest.approx(np.mean((production >= 0.5) == (shadow >= 0.5)))
    assert entry["mean_shift"] == pytest.approx(shadow.mean() - production.mean())
    y = frame["has_fraud_dispute"].to_numpy(float)
    assert entry["production_auc"] == pytest.approx(roc_auc_score(y, production))
    assert entry["shadow_auc"] == pytest.approx(roc_auc_score(y, shadow))
    bins = entry["histogram"]
    assert bins["edges"][0] == 0 and bins["edges"][-1] == 1
    assert bins["production"] == np.histogram(production, bins["edges"])[0].tolist()
    assert bins["shadow"] == np.histogram(shadow, bins["edges"])[0].tolist()
    parts = list((server.home / "shadow").rglob("part-*.parquet"))
    assert parts and all("date=" in str(p.parent) for p in parts)


def _degraded(url: str, name: str) -> list[dict[str, Any]]:
    return [d for d in httpx.get(f"{url}/healthz").json()["degraded"] if d["model_name"] == name]


def test_a_model_whose_bytes_do_not_match_is_refused_and_serving_says_it_is_degraded(
        server: ServerProcess, client: Client, model: dict[str, Any]) -> None:
    name = model["name"]
    rows = _rows(server, 2)
    first = _predict(server.url, name, rows).json()
    assert first["version"] == 1 and first["degraded"] is False
    assert "wanted_version" not in first and _degraded(server.url, name) == []
    hexd = model["v2"]["model_id"].split(":")[1]
    blob: Path = server.home / "artifacts" / "objects" / "sha256" / hexd[:2] / hexd[2:]
    blob.write_bytes(blob.read_bytes() + b"tampered")
    client.approve(name, 2, user="kelley", comment="ship it")
    wait_until(lambda: _predict(server.url, name, rows).json()["degraded"], timeout=10)
    for _ in range(20):
        answer = _predict(server.url, name, rows)
        assert answer.status_code == 200
        body = answer.json()
        assert body["version"] == 1  # the previous version keeps serving, and says why
        assert body["degraded"] is True and body["wanted_version"] == 2
        assert body["degraded_reason"].startswith("ArtifactError: ")
        assert "is corrupt" in body["degraded_reason"]
        assert " in <artifacts> is corrupt" in body["degraded_reason"]  # not the server's folder
        assert str(server.home) not in body["degraded_reason"]
    log = (server.home / "server.log").read_text()
    assert f"refusing to serve {name} v2" in log and "is corrupt" in log
    (state,) = _degraded(server.url, name)
    assert state["tenant"] == "*" and state["wanted_version"] == 2
    assert state["serving_version"] == 1 and "is corrupt" in state["reason"]
    stats = httpx.get(f"{server.url}/serving/stats").json()
    (listed,) = [d for d in stats["degraded"] if d["model_name"] == name]
    assert {**listed, "since": None} == {**state, "since": None}

    def audited() -> list[dict[str, Any]]:
        return [e for e in client.events(name) if e["reason"].startswith("serving degraded")]

    wait_until(audited, timeout=10)  # recorded off the request path
    (event,) = audited()  # once, however many requests were answered degraded
    assert event["version"] == 2 and event["actor"] == "modelyard"
    assert event["from_stage"] == event["to_stage"] == "production"
    assert "version 2 cannot be loaded (ArtifactError: " in event["reason"]
    assert event["reason"].endswith("; version 1 answers instead")

    client.rollback(name, actor="kelley", reason="v2 is corrupt")
    wait_until(lambda: _degraded(server.url, name) == [], timeout=10)
    answer = _predict(server.url, name, rows).json()
    assert answer["version"] == 1 and answer["degraded"] is False
    assert len(audited()) == 1


@SQLITE
def test_a_version_that_cannot_be_built_is_served_degraded_too(
        server: ServerProcess, client: Client, model: dict[str, Any]) -> None:
    name = model["name"]
    rows = _rows(server, 2)
    assert _predict(server.url, name, rows).json()["degraded"] is False
    # Its bytes are intact, but the provenance that names its workflow is gone.
    provenance = server.home / "artifacts" / "jobs" / model["v2"]["job_id"] / "provenance.json"
    provenance.unlink()
    client.approve(name, 2, user="kelley", comment="ship it")
    wait_until(lambda: _predict(server.url, name, rows).json()["degraded"], timeout=10)
    body = _predict(server.url, name, rows).json()
    assert body["version"] == 1 and body["wanted_version"] == 2
    assert body["degraded_reason"].startswith("NotFound: ")
    (state,) = _degraded(server.url, name)
    assert state["serving_version"] == 1


@SQLITE
def test_concurrent_single_rows_are_micro_batched(server: ServerProcess,
                                                  model: dict[str, Any]) -> None:
    rows = _rows(server, 64)
    before = httpx.get(f"{server.url}/serving/stats").json()

    def one(row: dict[str, Any], out: list[int]) -> None:
        out.append(_predict(server.url, model["name"], [row]).status_code)

    codes: list[int] = []
    threads = [threading.Thread(target=one, args=(r, codes)) for r in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = httpx.get(f"{server.url}/serving/stats").json()
    assert codes == [200] * 64
    assert after["predicted_rows"] - before["predicted_rows"] == 64
    assert after["predict_calls"] - before["predict_calls"] < 64


@SQLITE
def test_export_loads_and_predicts_without_modelyard_running(
    server: ServerProcess, client: Client, model: dict[str, Any], tmp_path: Path
) -> None:
    import subprocess
    import sys

    folder = client.export(model["name"], 1, tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "model.json", "model.pkl", "predict.py", "request.json", "requirements.txt",
        "vendor"]
    requirements = (folder / "requirements.txt").read_text().lower()
    assert "scikit-learn==" in requirements
    # The built-in workflow's encoder is in the pickle: vendored, not required.
    assert "modelyard" not in requirements
    assert (folder / "vendor" / "modelyard" / "runtime" / "encoders.py").is_file()
    rows = pd.DataFrame(_rows(server, 25))
    rows.to_parquet(tmp_path / "rows.parquet")
    # A fresh interpreter with only the export folder: no server, no Modelyard import by us.
    run = subprocess.run(
        [sys.executable, str(folder / "predict.py"), str(tmp_path / "rows.parquet")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    exported = np.array([float(x) for x in run.stdout.split()])
    served = _predict(server.url, model["name"], rows.to_dict("records")).json()["scores"]
    np.testing.assert_allclose(exported, served, rtol=1e-9)

    (folder / "model.pkl").write_bytes((folder / "model.pkl").read_bytes()[:-1] + b"x")
    tampered = subprocess.run([sys.executable, str(folder / "predict.py"),
                               str(tmp_path / "rows.parquet")], capture_output=True, text=True)
    assert tampered.returncode != 0 and "it was altered" in tampered.stderr


@SQLITE
def test_mlflow_export_loads_without_modelyard_and_scores_like_the_registered_version(
    server: ServerProcess, client: Client, model: dict[str, Any], tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    pytest.importorskip("mlflow")
    from modelyard.errors import Conflict

    folder = client.export(model["name"], 1, tmp_path / "mlflow", format="mlflow")
    assert (folder / "MLmodel").is_file() and (folder / "code" / "modelyard_pyfunc.py").is_file()
    assert "scikit-learn==" in (folder / "requirements.txt").read_text().lower()
    rows = pd.DataFrame(_rows(server, 25, seed=3))  # the label column too: extra columns pass
    rows.to_parquet(tmp_path / "rows.parquet")
    # A fresh interpreter: MLflow's loader and the loader module copied into the model; of
    # Modelyard only what model.pkl itself references (the built-in workflow's encoder).
    code = ("import json, sys, mlflow.pyfunc, pandas as pd\n"
            "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
            "print(json.dumps([float(s) for s in m.predict(pd.read_parquet(sys.argv[2]))]))\n"
            "print(json.dumps(m.metadata.get_input_schema().to_dict()))\n"
            "print(json.dumps(sorted(k for k in sys.modules if k.startswith('modelyard'))))\n")
    run = subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "rows.parquet")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=90)
    assert run.returncode == 0, run.stderr
    scores, schema, modules = (json.loads(line) for line in run.stdout.splitlines()[-3:])
    served = _predict(server.url, model["name"], rows.to_dict("records")).json()["scores"]
    np.testing.assert_allclose(scores, served, rtol=1e-9, atol=1e-9)
    assert {c["name"]: c["type"] for c in schema} == {
        "charge_type": "string", "charge_amount": "double", "charge_country": "string",
        "card_age_days": "long", "hour_of_day": "long"}
    assert "modelyard_pyfunc" in modules  # the loader copied into the model, not ours
    assert "modelyard.mlflow_export" not in modules and "modelyard.api" not in modules

    with pytest.raises(Conflict, match="already exists and is not empty"):
        client.export(model["name"], 1, tmp_path / "mlflow", format="mlflow")
    pkl = folder / "data" / "export" / "model.pkl"
    pkl.write_bytes(pkl.read_bytes()[:-1] + b"x")
    import mlflow.pyfunc

    with pytest.raises(ValueError, match="it was altered"):
        mlflow.pyfunc.load_model(str(folder))


def test_a_serving_replica_serves_what_the_training_server_promotes(
    server: ServerProcess, client: Client, model: dict[str, Any]
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from modelyard.server import free_port

    port = free_port()
    replica = subprocess.Popen(
        [sys.executable, "-m", "modelyard", "serve", "--port", str(port), "--home",
         str(server.home), "--db", server.db_url, "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=1).json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert health["executor"] == "none (serving only)"
        assert httpx.post(f"{url}/train", json={}).status_code == 404  # no training here
        rows = _rows(server, 3)
        assert _predict(url, model["name"], rows).json()["version"] == 1
        # A replica exposes serving's own metrics; the job store's are the training server's.
        metrics = scrape(url)
        assert metrics.value("modelyard_predict_latency_seconds_count", model=model["name"]) == 1
        assert not [s for s in metrics.samples if s.name == "modelyard_jobs"]
        _replica_splits(url, client, model["name"], rows)

        def serves(version: int | None) -> None:
            def served() -> int | None:
                answer = _predict(url, model["name"], rows)
                return answer.json()["version"] if answer.status_code == 200 else None

            wait_until(lambda: served() == version, timeout=10)  # the replica polls

        client.approve(model["name"], 2, user="kelley", comment="to every replica")
        serves(2)
        # A version leaving production as another enters, then one leaving alone: the replica
        # follows each (its poll counts only the versions it serves).
        client.rollback(model["name"], actor="kelley", reason="v2 misbehaves")
        serves(1)
        client.set_stage(model["name"], 1, "archived", actor="kelley", reason="retired")
        serves(None)
    finally:
        os.killpg(replica.pid, signal.SIGTERM)
        replica.wait(timeout=20)


def _replica_splits(url: str, client: Client, name: str, rows: list[dict[str, Any]]) -> None:
    """An experiment started on the training server splits a replica's traffic too (the
    replica reads the shared experiment tables; the server's controller alone moves it), and
    what the replica served counts in the server's scorecard."""
    experiment = client.create_experiment({"model_name": name, "type": "ab", "arms": [
        {"name": "one", "version": 1}, {"name": "two", "version": 2}]})

    def arms() -> set[str | None]:
        return {httpx.post(f"{url}/predict/{name}", json={"rows": rows, "unit": f"u{i}"},
                           timeout=30).json()["arm"] for i in range(20)}

    wait_until(lambda: arms() == {"one", "two"}, timeout=10)  # the replica polls
    wait_until(lambda: sum(a["requests"] for a in client.experiment(experiment["id"])["arms"])
               >= 20)
    client.stop_experiment(experiment["id"], actor="kelley", reason="the replica split")
    wait_until(lambda: _predict(url, name, rows).json()["experiment"] is None, timeout=10)


@SQLITE
def test_shadows_score_in_a_process_of_their_own_that_may_crash(
        server: ServerProcess, client: Client, model: dict[str, Any]) -> None:
    name = model["name"]
    client.set_stage(name, 2, "shadow", actor="kelley", reason="try it on live traffic")
    rows = _rows(server, 20, seed=5)
    assert _predict(server.url, name, rows).status_code == 200
    _shadow_report(server.url, name)  # drains the scorer
    before = httpx.get(f"{server.url}/serving/stats").json()
    scorer = before["shadow_scorer_pid"]
    assert server.process is not None
    assert scorer not in (None, server.process.pid) and before["shadow_rows"] >= 20

    os.kill(scorer, signal.SIGKILL)  # as a shadow model that segfaults would
    answers = [_predict(server.url, name, rows) for _ in range(20)]  # serving never notices
    assert all(a.status_code == 200 and a.json()["version"] == 1 for a in answers)

    def restarted() -> bool:
        stats = httpx.get(f"{server.url}/serving/stats").json()
        return bool(stats["shadow_scorer_restarts"] == before["shadow_scorer_restarts"] + 1
                    and stats["shadow_scorer_pid"] != scorer)

    wait_until(restarted, timeout=30)
    assert _predict(server.url, name, rows).status_code == 200
    report = _shadow_report(server.url, name)
    assert report["shadows"][0]["rows"] > 20  # the new scorer logs again


def _logged(server: ServerProcess, name: str) -> int:
    """Rows the shadow log holds for model ``name``."""
    import urllib.parse

    import pyarrow.parquet as pq

    folder = server.home / "shadow" / f"model={urllib.parse.quote(name, safe='')}"
    return sum(pq.ParquetFile(p).metadata.num_rows for p in folder.rglob("part-*.parquet"))


@SQLITE
def test_shadow_rows_a_dying_scorer_takes_with_it_are_counted_lost_not_scored(
        server: ServerProcess, client: Client, model: dict[str, Any]) -> None:
    name = model["name"]
    client.set_stage(name, 2, "shadow", actor="kelley", reason="try it on live traffic")
    rows = _rows(server, 10, seed=9)
    assert _predict(server.url, name, rows).status_code == 200
    _shadow_report(server.url, name)  # drained: nothing of this model queued or buffered
    before = httpx.get(f"{server.url}/serving/stats").json()
    logged = _logged(server, name)
    sent: list[int] = []
    failed: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                answer = http.post(f"{server.url}/predict/{name}", json={"rows": rows})
                if answer.status_code == 200:
                    sent.append(len(rows))  # one shadow version: a log row per row
                else:
                    failed.append(answer.text)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        # Scored but not yet written: what a scorer that dies now takes with it.
        wait_until(lambda: httpx.get(f"{server.url}/serving/stats").json()[
            "shadow_buffered"] > 0, timeout=30)
        os.kill(before["shadow_scorer_pid"], signal.SIGKILL)
        wait_until(lambda: httpx.get(f"{server.url}/serving/stats").json()[
            "shadow_scorer_restarts"] == before["shadow_scorer_restarts"] + 1, timeout=30)
        wait_until(lambda: _predict(server.url, name, rows).status_code == 200)
        stop.set()
    finally:
        stop.set()
        thread.join()
    assert failed == []
    sent.append(len(rows))  # the one wait_until sent
    _shadow_report(server.url, name)  # drains the new scorer: everything written or lost
    after = httpx.get(f"{server.url}/serving/stats").json()
    scored = after["shadow_rows"] - before["shadow_rows"]
    lost = after["shadow_lost"] - before["shadow_lost"]
    assert lost > 0
    assert scored == _logged(server, name) - logged  # scored means in the log
    assert after["shadow_buffered"] == after["shadow_queue"] == 0
    assert scored + lost + after["shadow_dropped"] - before["shadow_dropped"] == sum(sent)


@SQLITE
def test_labels_from_a_parquet_file_reach_the_report(server: ServerProcess, client: Client,
                                                      model: dict[str, Any]) -> None:
    name = model["name"]
    client.set_stage(name, 2, "shadow", actor="kelley", reason="try it on live traffic")
    rows = _rows(server, 200, seed=7)
    answers = [client.predict(name, rows[i:i + 50]) for i in range(0, 200, 50)]
    labels = pd.DataFrame([{"request_id": a["request_id"], "row": i,
                            "label": bool(rows[k * 50 + i]["has_fraud_dispute"])}
                           for k, a in enumerate(answers) for i in range(len(a["scores"]))])
    labels.to_parquet(server.home / "data" / f"labels-{name}.parquet")

    assert client.add_labels(name, path=f"labels-{name}.parquet")["labels"] == 200
    (entry,) = client.shadow_report(name)["shadows"]
    production = np.concatenate([a["scores"] for a in answers])
    assert entry["rows"] == entry["labelled_rows"] == 200
    assert entry["production_auc"] == pytest.approx(
        roc_auc_score(labels["label"].astype(float), production))

    wrong = labels.drop(columns=["label"])
    wrong.to_parquet(server.home / "data" / f"nolabel-{name}.parquet")
    bad = httpx.post(f"{server.url}/labels",
                     json={"model_name": name, "path": f"nolabel-{name}.parquet"})
    assert bad.status_code == 422 and "'label'" in bad.json()["message"]
    outside = httpx.post(f"{server.url}/labels", json={"model_name": name, "path": "/etc/passwd"})
    assert outside.status_code in (403, 422) and "data root" in outside.text
    both = httpx.post(f"{server.url}/labels", json={"model_name": name, "path": "x.parquet",
                                                    "labels": [{"request_id": "r", "label": 1}]})
    assert both.status_code == 422 and "not both" in both.text


@SQLITE
def test_the_predict_path_answers_as_the_declared_route(server: ServerProcess,
                                                        model: dict[str, Any]) -> None:
    """POST /predict/{name} is dispatched without FastAPI's router (api/predict_path.py): its
    answers are the declared route's, and other methods and paths still reach the app."""
    rows = _rows(server, 2)
    url = f"{server.url}/predict"
    bad_name = httpx.post(f"{url}/%20{model['name']}", json={"rows": rows})
    assert bad_name.status_code == 422
    assert bad_name.json()["detail"][0]["loc"] == ["path", "model_name"]
    assert bad_name.json()["message"].startswith(
        "invalid request: path.model_name: model name ' serve-")
    assert "starts or ends with white space" in bad_name.json()["message"]
    both = httpx.post(f"{url}/%20{model['name']}", json={"rows": rows, "extra": 1})
    assert both.status_code == 422 and both.json()["detail"][0]["loc"] == ["body", "extra"]
    text = httpx.post(f"{url}/{model['name']}", content=b"{}",
                      headers={"content-type": "text/plain"})
    assert text.status_code == 422 and "Content-Type: application/json" in text.text
    assert httpx.get(f"{url}/{model['name']}").status_code == 405
    assert httpx.post(f"{url}/{model['name']}/more", json={"rows": rows}).status_code == 404
    answer = httpx.post(f"{url}/{model['name']}", json={"rows": rows})
    assert answer.status_code == 200 and len(answer.json()["scores"]) == 2
    assert answer.headers["content-type"] == "application/json"
