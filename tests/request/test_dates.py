"""Relative dates and durations, as a request and a trigger write them."""

from __future__ import annotations

import datetime as dt

import pytest

from modelyard.request.dates import parse_duration, resolve_date, resolve_request_dates

NOW = dt.datetime(2026, 12, 7, 7, 50, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("-28d", dt.datetime(2026, 11, 9)),  # days count from today's midnight
    ("today-7d", dt.datetime(2026, 11, 30)),
    ("today", dt.datetime(2026, 12, 7)),
    ("today+1d", dt.datetime(2026, 12, 8)),
    ("-2w", dt.datetime(2026, 11, 23)),
    ("now-6h", dt.datetime(2026, 12, 7, 1, 50)),  # hours count from now
    ("-30m", dt.datetime(2026, 12, 7, 7, 20)),
    ("NOW", dt.datetime(2026, 12, 7, 7, 50)),
])
def test_a_relative_date_resolves_against_now(text: str, expected: dt.datetime) -> None:
    assert resolve_date(text, NOW) == expected


def test_a_request_without_relative_dates_is_returned_unchanged() -> None:
    raw = {"holdout_sampling": {"date_range_sampling": {"start_date": "2026-01-01",
                                                         "end_date": "2026-02-01"}}}
    assert resolve_request_dates(raw, NOW) is raw


def test_a_request_records_each_expression_it_resolved() -> None:
    raw = {"holdout_sampling": {"date_range_sampling": {"start_date": "-28d",
                                                         "end_date": "2026-12-01"}},
           "filters": [{"feature_value": {"date_val": "today-1w"}}]}
    out = resolve_request_dates(raw, NOW)
    assert out["holdout_sampling"]["date_range_sampling"]["start_date"] == "2026-11-09T00:00:00"
    assert out["filters"][0]["feature_value"]["date_val"] == "2026-11-30T00:00:00"
    assert out["resolved_dates"] == {
        "holdout_sampling.date_range_sampling.start_date": {
            "expression": "-28d", "date": "2026-11-09T00:00:00"},
        "filters.0.feature_value.date_val": {"expression": "today-1w",
                                             "date": "2026-11-30T00:00:00"}}
    assert raw["holdout_sampling"]["date_range_sampling"]["start_date"] == "-28d"  # a copy


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", dt.timedelta(days=7)), ("12h", dt.timedelta(hours=12)), ("2w", dt.timedelta(weeks=2)),
    (" 30m ", dt.timedelta(minutes=30)), ("45s", dt.timedelta(seconds=45))])
def test_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["7", "d", "-7d", "7 days", "1.5h", ""])
def test_a_bad_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="write a whole number and a unit"):
        parse_duration(text)


@pytest.mark.parametrize("raw", [
    {"holdout_sampling": [None, None]}, {"holdout_sampling": "x"},
    {"holdout_sampling": {"date_range_sampling": 3}}, {"filters": [None, 3, {"feature_value": []}]},
    {"filters": {"a": 1}}])
def test_a_request_of_any_shape_passes_through_to_its_validation(raw: dict[str, object]) -> None:
    assert resolve_request_dates(raw, NOW) is raw
