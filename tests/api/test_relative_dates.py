"""Relative dates through the real server: ``-28d`` and ``today`` resolve when the job is
created, the job keeps the dates it resolved to (and the expressions), and its replay reads
the same window however much later it runs."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from modelyard.client import Client
from modelyard.errors import RequestError
from modelyard.synthetic import write_payments
from tests.conftest import ServerProcess


def _recent_request(server: ServerProcess, fraud_request: dict[str, Any]) -> dict[str, Any]:
    """The fraud request on a year of charges that ends today."""
    name = f"recent-{uuid.uuid4().hex[:8]}.parquet"
    today = dt.datetime.now(dt.UTC).replace(tzinfo=None, hour=0, minute=0, second=0,
                                            microsecond=0)
    write_payments(server.home / "data" / name, rows=4_000, merchants=20,
                   start=today - dt.timedelta(days=364))
    data = fraud_request["data"]
    request = {**fraud_request, "data": {**data, "features": {**data["features"], "path": name}}}
    request["metadata"] = {**request["metadata"], "model_name": name.removesuffix(".parquet")}
    request["holdout_sampling"] = {"sampling_function": "DATE_RANGE", "date_range_sampling": {
        "date_column": "created_at", "start_date": "-28d", "end_date": "today+1d"}}
    return request


# Resolution is the request contract's; the job store only keeps what it is given.
@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_relative_dates_resolve_when_the_job_is_created_and_its_replay_keeps_them(
        server: ServerProcess, client: Client, fraud_request: dict[str, Any]) -> None:
    request = _recent_request(server, fraud_request)
    today = dt.date.today()  # the server resolves in UTC; a test at midnight UTC could race
    job_id = client.train(request)
    result = client.wait(job_id, 300)["result"]
    job = client.job(job_id)

    window = job["request"]["holdout_sampling"]["date_range_sampling"]
    start = dt.datetime.fromisoformat(window["start_date"])
    end = dt.datetime.fromisoformat(window["end_date"])
    assert (end - start).days == 29, window
    assert end.date() - dt.timedelta(days=1) in (today, today - dt.timedelta(days=1),
                                                 today + dt.timedelta(days=1))
    resolved = job["request"]["resolved_dates"]
    assert resolved["holdout_sampling.date_range_sampling.start_date"] == {
        "expression": "-28d", "date": window["start_date"]}
    assert resolved["holdout_sampling.date_range_sampling.end_date"]["expression"] == "today+1d"
    assert result["metrics"]["holdout_rows"] > 0  # the last 28 days are the holdout

    replay_id = client.replay(job_id)
    client.wait(replay_id, 300)
    replay = client.job(replay_id)
    assert replay["request"]["holdout_sampling"] == job["request"]["holdout_sampling"]
    assert replay["request"]["resolved_dates"] == resolved


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
# -999999w and today+999999w are well formed, and past the years a date can hold (a 500).
@pytest.mark.parametrize("value", ["-28x", "today-", "yesterday", "-999999w", "today+999999w"])
def test_a_bad_relative_date_is_refused_naming_the_field(
        client: Client, fraud_request: dict[str, Any], value: str) -> None:
    request = {**fraud_request, "holdout_sampling": {
        "sampling_function": "DATE_RANGE", "date_range_sampling": {
            "date_column": "created_at", "start_date": value, "end_date": "today"}}}
    with pytest.raises(RequestError, match="holdout_sampling.date_range_sampling.start_date"):
        client.train(request)
