"""Relative dates and durations in requests: ``-28d``, ``today-7d``, ``now-6h``; ``7d``, ``12h``.

A relative date is resolved once, when the job (or pipeline run) is created, and the request
is stored with the absolute date it resolved to, so a rerun or a replay of a scheduled run
reads the same window. Days and weeks count from today's midnight (UTC), so every run of one
day gets the same window; hours and minutes count from now.
"""

from __future__ import annotations

import datetime as dt
import re

_UNITS = {"w": dt.timedelta(weeks=1), "d": dt.timedelta(days=1), "h": dt.timedelta(hours=1),
          "m": dt.timedelta(minutes=1), "s": dt.timedelta(seconds=1)}
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([wdhms])\s*$")
_RELATIVE = re.compile(r"^\s*(today|now)?\s*(?:([+-])\s*(\d{1,6})\s*([wdhm]))?\s*$")


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
    return base + step if sign == "+" else base - step
