"""Problems found in the data fail the job with a message a user can act on; the server stays up."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelyard.client import Client
from modelyard.errors import JobFailed


def _missing_file(r: dict[str, Any]) -> None:
    r["data"]["features"]["path"] = "nope.parquet"


def _outside_roots(r: dict[str, Any]) -> None:
    r["data"]["features"]["path"] = "/etc/passwd"


def _not_parquet(r: dict[str, Any]) -> None:
    r["data"]["features"]["path"] = "corrupt.parquet"


def _escapes_root(r: dict[str, Any]) -> None:
    r["data"]["features"]["path"] = "../server.log"


def _missing_column(r: dict[str, Any]) -> None:
    r["data"]["features"]["names"].append("card_bin")


def _no_rows(r: dict[str, Any]) -> None:
    r["filters"][0]["feature_value"] = {"string_vals": ["ZZ"]}


def _empty_holdout(r: dict[str, Any]) -> None:
    r["holdout_sampling"]["date_range_sampling"].update(start_date="2030-01-01",
                                                        end_date="2030-02-01")


def _single_class(r: dict[str, Any]) -> None:
    r["filters"].append({"feature_name": "has_fraud_dispute", "predicate": "Equals",
                         "feature_value": {"bool_val": False}})


def _unknown_workflow(r: dict[str, Any]) -> None:
    r["train"]["workflow_name"] = "NoSuchModel"


def _raises(r: dict[str, Any]) -> None:
    r["train"]["workflow_name"] = "Raises"
    r["train"]["custom_params"] = {"max_depth": 99}


CASES = [
    (_missing_file, "DataError", r"data path nope.parquet does not exist \(looked in: .*data"),
    (_outside_roots, "DataAccessDenied", r"/etc/passwd is outside the configured data roots"),
    (_not_parquet, "DataError", r"corrupt.parquet is not readable as parquet: .*write them with"),
    (_escapes_root, "DataAccessDenied", r"\.\./server.log is outside the configured data roots"),
    (_missing_column, "DataError", r"no column 'card_bin' in payments.parquet \(columns: "),
    (_no_rows, "DataError", r"the filters leave no rows .*charge_country IsIn .*keeps 0"),
    (_empty_holdout, "DataError", r"the holdout is empty: .*\[2030-01-01.*span 2018"),
    (_single_class, "DataError", r"label 'has_fraud_dispute' has a single value \(False\)"),
    (_unknown_workflow, "WorkflowError", r"unknown workflow 'NoSuchModel' \(known: .*sklearn"),
    (_raises, "ValueError", r"boom: max_depth=99 is not allowed"),
]


# The data is read and checked in the worker; the job store only records the failure, as it
# records every failure (tests/jobs): SQLite alone.
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("mutate", "error_type", "message"), CASES,
                         ids=[c[0].__name__.strip("_") for c in CASES])
def test_data_problem_fails_the_job_with_an_actionable_message(
    client: Client, fraud_request: dict[str, Any], mutate: Any, error_type: str, message: str
) -> None:
    request = copy.deepcopy(fraud_request)
    mutate(request)
    job_id = client.train(request)
    with pytest.raises(JobFailed, match=message) as failed:
        client.wait(job_id, timeout=120)
    info = failed.value.exception_info or {}
    assert info["type"].endswith(error_type)
    assert client.health()["status"] == "ok"
