"""The training contract (runtime.training.execute) run in-process on real parquet files, a real
artefact folder and real workflows: the events it reports and the artefacts it writes. Its
failures are test_training_errors.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from modelyard.artifacts import SUCCESS_MARKER, ArtifactStore
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    StepFinished,
    StepStarted,
    WorkerEvent,
    WorkerStarted,
)
from modelyard.protocol.results import ExceptionInfo, JobResult
from modelyard.request import parse_request

from .conftest import PAYMENTS_ROWS, WORKFLOWS_FILE, RunWorker

STEPS = ["resolve_workflow", "load", "filter", "split", "train", "serialize", "evaluate"]
SHA256_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------
# helpers


def finished(events: list[WorkerEvent]) -> JobResult:
    """The result of a run that must have succeeded, after checking the event sequence."""
    assert isinstance(events[0], WorkerStarted) and events[0].pid == os.getpid()
    terminal = [e for e in events if isinstance(e, JobFinished | JobErrored)]
    assert len(terminal) == 1 and terminal[0] is events[-1]
    last = events[-1]
    assert isinstance(last, JobFinished), last.exception_info.message
    steps = [(type(e).__name__, e.name) for e in events[1:-1]]
    assert steps == [(kind, s) for s in STEPS for kind in ("StepStarted", "StepFinished")]
    assert {e.job_id for e in events} == {events[0].job_id}
    assert isinstance(last.result, JobResult)
    return last.result


def errored(events: list[WorkerEvent], step: str | None, type_name: str, message: str
            ) -> ExceptionInfo:
    """The exception_info of a run that must have failed in ``step``, with ``message`` matched."""
    assert isinstance(events[0], WorkerStarted)
    terminal = [e for e in events if isinstance(e, JobFinished | JobErrored)]
    assert len(terminal) == 1 and terminal[0] is events[-1]
    assert isinstance(events[-1], JobErrored), "the job should have failed"
    info = events[-1].exception_info
    assert (info.step, info.type) == (step, type_name), info.message
    assert re.search(message, info.message), info.message
    assert info.traceback
    started = [e.name for e in events if isinstance(e, StepStarted)]
    done = [e.name for e in events if isinstance(e, StepFinished)]
    if step is not None:
        # every step up to the failing one ran; the failing one started and did not finish
        assert started == STEPS[: STEPS.index(step) + 1]
        assert done == STEPS[: STEPS.index(step)]
    pickle.loads(pickle.dumps(info))  # plain and picklable, for any executor
    return info


def read_tsv(path: str) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def sha256_file(path: str | Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def with_train(req: dict[str, Any], **train: Any) -> dict[str, Any]:
    return {**req, "train": {**req["train"], **train}}


# --------------------------------------------------------------------------------------------
# a successful job


def test_a_job_runs_every_step_and_writes_its_artefacts(
    run_worker: RunWorker, fraud_request: dict[str, Any], artifact_root: Path, payments: Any,
    data_root: Path,
) -> None:
    result = finished(run_worker(fraud_request, job_id="job-ok"))
    store = ArtifactStore(str(artifact_root))

    # the model id is the sha256 of the stored blob, which unpickles into a working model
    model_id = result.model_id
    assert SHA256_ID.match(model_id)
    blob_path = store.blob_path(model_id)
    assert sha256_file(blob_path) == model_id
    model = pickle.loads(store.get_bytes(model_id))
    assert model.predict_proba(payments.slice(0, 5).to_pandas()[
        fraud_request["train"]["classifier_features"]]).shape == (5, 2)

    # the row counts are what a direct computation on the file gives
    frame = payments.to_pandas()
    countries = fraud_request["filters"][0]["feature_value"]["string_vals"]
    kept = frame[frame.charge_country.isin(countries)
                 & (frame.created_at < pd.Timestamp("2019-01-01"))]
    holdout = kept[kept.created_at >= pd.Timestamp("2018-10-01")]
    assert result.row_counts == {
        "total": PAYMENTS_ROWS,
        "after_filters": len(kept),
        "train": len(kept) - len(holdout),
        "holdout": len(holdout),
    }

    # one line per holdout row (plus the header) in scores.tsv and labels.tsv
    scores_path = result.evaluation_holdout_data_path
    labels_path = result.evaluation_holdout_label_path
    for path, header in ((scores_path, "score"), (labels_path, "label")):
        lines = Path(path).read_text().splitlines()
        assert lines[0] == header and len(lines) == len(holdout) + 1
    scores, labels = read_tsv(scores_path)["score"], read_tsv(labels_path)["label"]
    assert labels.tolist() == holdout.has_fraud_dispute.tolist()

    # metrics.json holds what sklearn computes from those two files
    metrics = json.loads(Path(result.metrics_path).read_text())
    assert metrics == result.metrics
    assert metrics["task"] == "binary" and metrics["holdout_rows"] == len(holdout)
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-9)
    assert metrics["pr_auc"] == pytest.approx(skm.average_precision_score(labels, scores),
                                              abs=1e-9)
    assert metrics["roc_auc"] > 0.6, "the synthetic fraud label is learnable"

    # provenance.json says where everything came from
    provenance = json.loads(Path(result.provenance_path).read_text())
    request = parse_request(fraud_request)
    assert provenance["request_hash"] == request.request_hash() == result.request_hash
    assert provenance["request"] == request.model_dump(mode="json")
    assert provenance["workflow"]["name"] == "Logistic"
    assert provenance["workflow"]["class"] == "workflows_for_tests:Logistic"
    assert provenance["workflow"]["source_sha256"] == sha256_file(WORKFLOWS_FILE)
    for package in ("modelyard", "numpy", "pandas", "pyarrow", "scikit-learn"):
        assert provenance["packages"][package] == metadata.version(package)
    assert provenance["python"] == sys.version.split()[0]
    data = provenance["data"]
    assert data["digest"] == result.data_digest and SHA256_ID.match(data["digest"])
    assert data["file_count"] == 1 and data["files"][0]["num_rows"] == PAYMENTS_ROWS
    assert data["files"][0]["path"] == os.path.realpath(data_root / "payments.parquet")
    assert provenance["row_counts"] == result.row_counts
    assert set(provenance["durations_s"]) == set(STEPS)
    assert provenance["job_id"] == "job-ok" and provenance["compute_resource"] == "CPU"

    # the job folder is complete, and nothing temporary is left
    job_dir = Path(store.job_dir("job-ok"))
    assert sorted(p.name for p in job_dir.iterdir()) == sorted(
        ["scores.tsv", "labels.tsv", "metrics.json", "provenance.json", "model.json",
         "profile.json", SUCCESS_MARKER])
    assert store.read_job_json("job-ok", "model.json")["model_id"] == model_id
    # monitoring's reference: every feature, the holdout's scores, and the training rows' dates
    profile = store.read_job_json("job-ok", "profile.json")
    assert [f["name"] for f in profile["features"]] == result.model.features
    assert profile["rows"] == result.row_counts["train"]
    assert profile["score"]["proportions"] and profile["newest_training_row"] is not None
    assert result.profile_path is not None and result.profile_path.endswith("profile.json")
    assert leftovers(artifact_root) == []


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name]


def test_step_infos_report_rows_and_the_model(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    events = run_worker(fraud_request)
    result = finished(events)
    info = {e.name: e.info for e in events if isinstance(e, StepFinished)}
    assert info["load"] == {"files": 1, "rows": PAYMENTS_ROWS}
    assert info["filter"] == {"rows": result.row_counts["after_filters"], "filters": 1}
    assert info["split"]["task"] == "binary"
    assert info["split"]["holdout_rows"] == result.row_counts["holdout"]
    assert info["train"]["model_type"] == "sklearn.pipeline.Pipeline"
    assert info["serialize"]["model_id"] == result.model_id
    assert info["evaluate"]["roc_auc"] == result.metrics["roc_auc"]


def test_the_builtin_sklearn_workflow_trains_the_demo_request(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    req = with_train(fraud_request, workflow_name="sklearn", custom_params={
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "max_iter": 20})
    result = finished(run_worker(req))
    assert result.workflow_class == "modelyard.runtime.builtin:SklearnWorkflow"
    assert result.metrics["roc_auc"] > 0.6


def test_custom_params_reach_the_workflow_untouched(
    run_worker: RunWorker, fraud_request: dict[str, Any], artifact_root: Path
) -> None:
    params = {"max_depth": 6, "rate": 0.1, "as_text": "6", "grid": [1, 2.5, None],
              "nested": {"a": {"b": [True, {"c": "d"}]}}, "none": None}
    result = finished(run_worker(with_train(fraud_request, workflow_name="EchoParams",
                                            custom_params=params)))
    model = pickle.loads(ArtifactStore(str(artifact_root)).get_bytes(result.model_id))
    assert model.custom_params_seen == params
    assert type(model.custom_params_seen["max_depth"]) is int
    assert (model.train_rows_seen, model.holdout_rows_seen) == (
        result.row_counts["train"], result.row_counts["holdout"])


def test_a_random_fraction_holdout(run_worker: RunWorker, fraud_request: dict[str, Any]) -> None:
    req = {**fraud_request, "filters": [], "holdout_sampling": {
        "sampling_function": "RANDOM_FRACTION",
        "random_fraction_sampling": {"fraction": 0.25, "seed": 3}}}
    first = finished(run_worker(req))
    counts = first.row_counts
    assert counts["total"] == counts["after_filters"] == counts["train"] + counts["holdout"]
    assert abs(counts["holdout"] / PAYMENTS_ROWS - 0.25) < 0.03
    again = finished(run_worker(req))
    labels = [Path(r.evaluation_holdout_label_path).read_text() for r in (first, again)]
    assert again.row_counts == counts and labels[0] == labels[1]


def test_a_dotted_path_names_a_workflow(run_worker: RunWorker, fraud_request: dict[str, Any]
                                        ) -> None:
    req = with_train(fraud_request, workflow_name="tests.runtime.workflows_for_tests:Logistic")
    result = finished(run_worker(req, workflow_modules=(), workflow_packages=("tests",)))
    assert result.workflow_class == "tests.runtime.workflows_for_tests:Logistic"


def test_a_dotted_path_finds_a_workflow_in_a_configured_file(
    run_worker: RunWorker, fraud_request: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh worker process: the file's folder is not on sys.path, its module not imported.
    folder = str(WORKFLOWS_FILE.parent)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.realpath(p) != folder])
    monkeypatch.delitem(sys.modules, "workflows_for_tests", raising=False)
    finished(run_worker(with_train(fraud_request, workflow_name="workflows_for_tests:Logistic")))


def test_a_regression_label_gets_regression_metrics(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    req = with_train(fraud_request, workflow_name="sklearn", label="charge_amount",
                     classifier_features=["charge_type", "card_age_days", "hour_of_day"],
                     custom_params={"max_iter": 20})
    result = finished(run_worker(req))
    metrics = result.metrics
    assert metrics["task"] == "regression"
    assert {"rmse", "mae", "r2"} <= set(metrics) and "roc_auc" not in metrics
    y = read_tsv(result.evaluation_holdout_label_path)["label"]
    s = read_tsv(result.evaluation_holdout_data_path)["score"]
    assert len(y) == len(s) == result.row_counts["holdout"]
    assert metrics["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, s)), rel=1e-6)
    assert metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, s), rel=1e-6)
    assert metrics["r2"] == pytest.approx(skm.r2_score(y, s), rel=1e-6, abs=1e-9)


def bands_request(fraud_request: dict[str, Any], workflow: str, **params: Any) -> dict[str, Any]:
    req = {**fraud_request, "data": {**fraud_request["data"], "features": {
        "names": ["created_at", "charge_amount", "hour_of_day", "amount_band"],
        "path": "bands.parquet"}}, "filters": []}
    return with_train(req, workflow_name=workflow, label="amount_band",
                      classifier_features=["charge_amount", "hour_of_day"], custom_params=params)


def test_a_text_label_of_several_classes_gets_multiclass_metrics(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    result = finished(run_worker(bands_request(fraud_request, "sklearn", max_iter=20)))
    metrics = result.metrics
    assert metrics["task"] == "multiclass"
    assert {"accuracy", "f1_macro", "log_loss"} <= set(metrics) and "roc_auc" not in metrics
    scores = read_tsv(result.evaluation_holdout_data_path)
    labels = read_tsv(result.evaluation_holdout_label_path)["label"]
    assert list(scores.columns) == ["score_high", "score_low", "score_mid"]
    assert len(scores) == len(labels) == result.row_counts["holdout"]
    predicted = scores.idxmax(axis=1).str.removeprefix("score_")
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert metrics["f1_macro"] == pytest.approx(skm.f1_score(labels, predicted, average="macro"))
    assert metrics["log_loss"] == pytest.approx(
        skm.log_loss(labels, scores.to_numpy(), labels=["high", "low", "mid"]), rel=1e-6)
    assert metrics["accuracy"] > 0.9, "the band is a function of charge_amount"


def test_a_multiclass_model_that_never_predicts_a_class_is_still_evaluated(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    result = finished(run_worker(bands_request(fraud_request, "Prior")))
    scores = read_tsv(result.evaluation_holdout_data_path)
    assert scores.nunique().max() == 1, "the prior is the same for every row"
    assert result.metrics["f1_macro"] < 0.5 and result.metrics["accuracy"] < 0.9


def test_the_artefact_thread_is_shared_by_a_process_s_jobs_and_restarted_after_a_fork() -> None:
    from modelyard.runtime import training

    helper = training._helper()
    assert training._helper() is helper and helper.submit(lambda: 41 + 1).result(timeout=10) == 42
    pid = os.fork()
    if pid == 0:  # a forked child has no copy of the thread: a fresh pool must do the work
        code = 1
        try:
            fresh = training._helper()
            code = 0 if fresh is not helper and fresh.submit(lambda: 7).result(timeout=10) == 7 \
                else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
