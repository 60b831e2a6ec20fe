"""Relative dates and durations in requests: ``-28d``, ``today-7d``, ``now-6h``; ``7d``, ``12h``.

A relative date is resolved once, when the job (or pipeline run) is created, and the request
is stored with the absolute date it resolved to, so a rerun or a replay of a scheduled run
reads the same window. Days and weeks count from today's midnight (UTC), so every run of one
day gets the same window; hours and minutes count from now.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_UNITS = {"w": dt.timedelta(weeks=1), "d": dt.timedelta(days=1), "h": dt.timedelta(hours=1),
          "m": dt.timedelta(minutes=1), "s": dt.timedelta(seconds=1)}
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([wdhms])\s*$")
_ATTEMPT = re.compile(r"^\s*(today|now|[+-]\s*\d)")  # meant as relative, whether valid or not
_RELATIVE = re.compile(r"^\s*(today|now)?\s*(?:([+-])\s*(\d{1,6})\s*([wdhm]))?\s*$")


class ResolvedDate(BaseModel):
    """A relative date of a request, as written, and the absolute date it resolved to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expression: str = Field(max_length=64)
    date: dt.datetime


def parse_duration(text: str) -> dt.timedelta:
    """``"7d"`` -> 7 days. Units: w, d, h, m, s.

    Raises:
        ValueError: not a whole number followed by one unit.
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a duration: write a whole number and a unit, such as "
                         "'30m', '12h', '7d' or '2w'")
    return int(match[1]) * _UNITS[match[2]]


MAX_WINDOW_DAYS = 366
"""The longest window monitoring reads (and a drift or decay trigger watches)."""


def parse_window(text: str) -> dt.timedelta:
    """A monitoring window: a duration (see :func:`parse_duration`) over 0, at most
    :data:`MAX_WINDOW_DAYS` days.

    Raises:
        ValueError: not a duration, or out of that range.
    """
    span = parse_duration(text)
    if span.total_seconds() <= 0 or span.days > MAX_WINDOW_DAYS:
        raise ValueError(f"{text!r} must be more than 0 and at most {MAX_WINDOW_DAYS} days")
    return span


def is_relative(text: object) -> bool:
    """Whether ``text`` is a relative date expression (not an ISO date)."""
    if not isinstance(text, str):
        return False
    match = _RELATIVE.match(text.lower())
    return match is not None and (match[1] is not None or match[2] is not None)


def resolve_date(text: str, now: dt.datetime) -> dt.datetime:
    """The absolute UTC datetime (naive, as requests hold dates) ``text`` means at ``now``.

    ``today`` is ``now``'s midnight; ``now`` is ``now``; a bare offset (``-28d``) counts from
    today for days and weeks, from now for hours and minutes.

    Raises:
        ValueError: not a relative date expression.
    """
    match = _RELATIVE.match(text.lower()) if isinstance(text, str) else None
    if match is None or (match[1] is None and match[2] is None):
        raise ValueError(f"{text!r} is neither a date nor a relative date such as '-28d', "
                         "'today-7d' or 'now-6h'")
    now = now.astimezone(dt.UTC).replace(tzinfo=None)
    anchor, sign, amount, unit = match[1], match[2], match[3], match[4]
    if anchor is None:
        anchor = "today" if unit in ("w", "d") else "now"
    base = now.replace(hour=0, minute=0, second=0, microsecond=0) if anchor == "today" else now
    if sign is None:
        return base
    step = int(amount) * _UNITS[unit]
    try:
        return base + step if sign == "+" else base - step
    except OverflowError:  # -999999w: before year 1
        raise ValueError(f"{text!r} is outside the dates that can be held (years 1 to "
                         "9999); use a smaller offset") from None


# Where a train request holds dates: the holdout window, and a filter's date values.
def _date_fields(raw: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    # The request is not validated yet: any level may be of any type (pydantic then says so).
    holdout = raw.get("holdout_sampling")
    window = holdout.get("date_range_sampling") if isinstance(holdout, dict) else None
    if isinstance(window, dict):
        for key in ("start_date", "end_date"):
            yield f"holdout_sampling.date_range_sampling.{key}", window, key
    filters = raw.get("filters")
    for i, item in enumerate(filters if isinstance(filters, list) else []):
        value = item.get("feature_value") if isinstance(item, dict) else None
        if isinstance(value, dict):
            for key in ("date_val", "min", "max"):
                yield f"filters.{i}.feature_value.{key}", value, key


def resolve_request_dates(raw: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """``raw`` (a train request, as sent) with each relative date replaced by the date it
    means at ``now``, and ``resolved_dates`` recording each one: ``{field: {expression, date}}``.

    A request without relative dates is returned as it is, so a stored request (dates already
    absolute, ``resolved_dates`` kept) parses to the same window whenever it is read again.
    """
    found = []
    for path, holder, key in _date_fields(raw):
        value = holder.get(key)
        if is_relative(value):
            found.append(path)
        elif isinstance(value, str) and _ATTEMPT.match(value.lower()):
            raise ValueError(f"{path}: {value!r} is neither a date (2026-11-30) nor a relative "
                             "date such as '-28d', 'today-7d' or 'now-6h' (units w, d, h, m)")
    if not found:
        return raw
    out = copy.deepcopy(raw)
    resolved = dict(out.get("resolved_dates") or {})
    for path, holder, key in _date_fields(out):
        expression = holder.get(key)
        if is_relative(expression):
            try:
                date = resolve_date(str(expression), now)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
            holder[key] = date.isoformat()
            resolved[path] = {"expression": expression, "date": date.isoformat()}
    out["resolved_dates"] = resolved
    return out
