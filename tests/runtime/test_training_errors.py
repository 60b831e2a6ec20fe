"""Each way a job can fail, run through the training contract in-process: exactly one JobErrored,
in the step where it happened, with a message that names the problem and says what to do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from modelyard.protocol.events import JobFinished

from .conftest import RunWorker
from .test_training import errored, with_train


def test_a_missing_file(run_worker: RunWorker, fraud_request: dict[str, Any], data_root: Path
                        ) -> None:
    fraud_request["data"]["features"]["path"] = "missing.parquet"
    errored(run_worker(fraud_request), "load", "DataError",
            rf"^data path missing\.parquet does not exist \(looked in: {data_root}\); "
            r"check data\.features\.path$")


def test_a_path_outside_the_data_roots(
    run_worker: RunWorker, fraud_request: dict[str, Any], data_root: Path, tmp_path: Path
) -> None:
    fraud_request["data"]["features"]["path"] = str(data_root / "payments.parquet")
    errored(run_worker(fraud_request, data_roots=(str(tmp_path),)), "load", "DataAccessDenied",
            r"is outside the configured data roots; move the data under one of them")


def test_a_file_that_is_not_parquet(run_worker: RunWorker, fraud_request: dict[str, Any]) -> None:
    fraud_request["data"]["features"]["path"] = "notes.parquet"
    errored(run_worker(fraud_request), "load", "DataError",
            r"^notes\.parquet is not readable as parquet: .*; Modelyard reads parquet files "
            r"\(write them with pandas\.DataFrame\.to_parquet\)$")


def test_a_missing_column(run_worker: RunWorker, fraud_request: dict[str, Any]) -> None:
    fraud_request["data"]["features"]["names"].append("merchant_country")
    errored(run_worker(fraud_request), "load", "DataError",
            r"^data\.features\.names: no column 'merchant_country' in payments\.parquet "
            r"\(columns: charge_id, merchant_id, created_at, charge_type, charge_amount, "
            r"charge_country, card_age_days, hour_of_day, has_fraud_dispute\)$")


def test_a_filter_of_the_wrong_type(run_worker: RunWorker, fraud_request: dict[str, Any]) -> None:
    fraud_request["filters"].append({"feature_name": "charge_amount", "predicate": "GreaterThan",
                                     "feature_value": {"string_val": "ten"}})
    errored(run_worker(fraud_request), "filter", "DataError",
            r"^filter on 'charge_amount': the value 'ten' does not fit the column's type double; "
            r"use a number_val")


def test_filters_that_leave_no_rows_name_the_filter(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    fraud_request["filters"] = [
        {"feature_name": "charge_country", "predicate": "IsIn",
         "feature_value": {"string_vals": ["ZZ"]}},
        {"feature_name": "charge_amount", "predicate": "GreaterThan",
         "feature_value": {"number_val": 0}},
    ]
    errored(run_worker(fraud_request), "filter", "DataError",
            r"^the filters leave no rows of the 5,000 in payments\.parquet \(charge_country IsIn "
            r"\{'string_vals': \['ZZ'\]\} keeps 0; charge_amount GreaterThan "
            r"\{'number_val': 0\} keeps 5,000\); loosen the filters$")


def test_an_empty_holdout_names_the_date_range_and_the_data_span(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    fraud_request["holdout_sampling"]["date_range_sampling"].update(
        start_date="2019-03-01", end_date="2019-06-01")
    errored(run_worker(fraud_request), "split", "DataError",
            r"^the holdout is empty: no filtered rows have created_at in "
            r"\[2019-03-01 00:00:00, 2019-06-01 00:00:00\) \(filtered rows span "
            r"2018-01-01 [\d:.]+ to 2018-12-31 [\d:.]+\); move "
            r"holdout_sampling\.date_range_sampling to dates the data covers$")


def test_no_training_rows_before_the_holdout(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    fraud_request["holdout_sampling"]["date_range_sampling"].update(
        start_date="2017-01-01", end_date="2019-01-01")
    errored(run_worker(fraud_request), "split", "DataError",
            r"^no training rows: no filtered rows have created_at before 2017-01-01 00:00:00 "
            r"\(filtered rows span 2018-01-01 .* to 2018-12-31 .*\); move start_date later$")


def test_no_rows_before_the_end_of_the_holdout(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    fraud_request["holdout_sampling"]["date_range_sampling"].update(
        start_date="2017-01-01", end_date="2017-06-01")
    errored(run_worker(fraud_request), "filter", "DataError",
            r"^no rows before holdout_sampling\.date_range_sampling\.end_date "
            r"\(2017-06-01 00:00:00\) pass the filters; move the date range$")


def test_an_empty_file_with_a_random_fraction_holdout(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    fraud_request["data"]["features"]["path"] = "empty.parquet"
    fraud_request["filters"] = []
    fraud_request["holdout_sampling"] = {"sampling_function": "RANDOM_FRACTION",
                                         "random_fraction_sampling": {"fraction": 0.2}}
    info = errored(run_worker(fraud_request), "filter", "DataError", r"empty\.parquet")
    assert "date_range_sampling" not in info.message


def test_a_label_with_a_single_class(run_worker: RunWorker, fraud_request: dict[str, Any]) -> None:
    fraud_request["filters"].append({"feature_name": "has_fraud_dispute", "predicate": "Equals",
                                     "feature_value": {"bool_val": False}})
    errored(run_worker(fraud_request), "split", "DataError",
            r"^label 'has_fraud_dispute' has a single value \(False\) in all [\d,]+ training "
            r"rows; classification needs at least two classes; widen the filters")


def test_an_unknown_workflow_lists_the_known_ones(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    info = errored(run_worker(with_train(fraud_request, workflow_name="NoSuchFlow")),
                   "resolve_workflow", "WorkflowError",
                   r"^unknown workflow 'NoSuchFlow' \(known: .*\); register it in the "
                   r"entry-point group modelyard\.workflows")
    known = re.search(r"\(known: (.*?)\)", info.message).group(1).split(", ")
    assert {"Logistic", "Raises", "ReturnsNone", "sklearn", "lightgbm", "xgboost"} <= set(known)


def test_a_workflow_that_raises_keeps_its_exception(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    req = with_train(fraud_request, workflow_name="Raises", custom_params={"max_depth": 60})
    info = errored(run_worker(req), "train", "ValueError", r"^boom: max_depth=60 is not allowed$")
    assert "workflows_for_tests.py" in info.traceback
    assert "ValueError: boom: max_depth=60 is not allowed" in info.traceback


def test_a_workflow_that_raises_its_own_exception_type(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    info = errored(run_worker(with_train(fraud_request, workflow_name="Diverges")), "train",
                   "workflows_for_tests.TrainingDiverged", r"^loss is nan at iteration 3$")
    assert 'raise TrainingDiverged("loss is nan at iteration 3")' in info.traceback


def test_a_workflow_that_returns_none(run_worker: RunWorker, fraud_request: dict[str, Any]) -> None:
    errored(run_worker(with_train(fraud_request, workflow_name="ReturnsNone")), "train",
            "WorkflowError",
            r"^workflows_for_tests:ReturnsNone\.train returned None; it must return the fitted "
            r"model$")


def test_a_model_that_cannot_be_pickled(
    run_worker: RunWorker, fraud_request: dict[str, Any], artifact_root: Path
) -> None:
    errored(run_worker(with_train(fraud_request, workflow_name="Unpicklable")), "serialize",
            "WorkflowError",
            r"^the model returned by train\(\) cannot be pickled \(\w+: .*\); return a picklable "
            r"object, e\.g\. the fitted estimator rather than a closure$")
    assert not (artifact_root / "jobs").exists() or not any((artifact_root / "jobs").iterdir())


def test_a_predict_that_drops_rows(run_worker: RunWorker, fraud_request: dict[str, Any]) -> None:
    errored(run_worker(with_train(fraud_request, workflow_name="ShortPredict")), "evaluate",
            "WorkflowError",
            r"^predict returned (\d+) scores for (\d+) holdout rows; it must return one score per "
            r"row$")


def test_an_invalid_request_fails_before_any_step(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    fraud_request["train"]["lable"] = fraud_request["train"].pop("label")
    errored(run_worker(fraud_request), None, "RequestError",
            r"train\.label: Field required; train\.lable: unknown field")


# -- a request names code; only the operator decides what may run --------------------------


@pytest.mark.parametrize("how", ["file path", "module beside it", "folder module"])
def test_a_request_cannot_import_a_file_the_operator_did_not_allow(
    run_worker: RunWorker, fraud_request: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, how: str,
) -> None:
    # The repro: any .py file on the machine ran on import, before the class check.
    marker = tmp_path / "ran"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass X: pass\n")
    monkeypatch.chdir(tmp_path)  # the server's working directory used to be importable
    monkeypatch.syspath_prepend(str(tmp_path))
    name = {"file path": f"{tmp_path}/evilmod.py:X", "module beside it": "evilmod:X",
            "folder module": "tmp.evilmod:X"}[how]
    message = "not a dotted path" if how == "file path" else "is not allowed"
    info = errored(run_worker(with_train(fraud_request, workflow_name=name)),
                   "resolve_workflow", "WorkflowError", message)
    assert "--workflow-package" in info.message or "registered workflow" in info.message
    assert not marker.exists()


def test_an_allowed_package_is_importable_by_dotted_path(
    run_worker: RunWorker, fraud_request: dict[str, Any]
) -> None:
    req = with_train(fraud_request, workflow_name="tests.runtime.workflows_for_tests:Logistic")
    info = errored(run_worker(req, workflow_modules=()), "resolve_workflow", "WorkflowError",
                   "--workflow-package tests")
    assert info.kind == "workflow_error"
    events = run_worker(req, workflow_modules=(), workflow_packages=("tests",))
    assert isinstance(events[-1], JobFinished)
