"""What a pipeline's ``triggers:`` block declares: plain data the scheduler interprets.

```yaml
triggers:
  - type: schedule          # cron, in the timezone given (UTC by default)
    cron: "0 3 * * 1"
  - type: new_data          # any of: rows new rows, new files, or every T since the last training
    rows: 50000
    files: true
    every: 7d
  - type: drift             # PSI above psi on any of the top_k most important features
    psi: 0.25
    top_k: 5
    window: 7d
  - type: decay             # the metric fell by margin below the version's own holdout figure
    margin: 0.02
    window: 7d
```

Every trigger has a ``debounce`` (no second firing of the same trigger within it) and, for a
fleet, ``per_tenant`` (each tenant's model is watched and retrained on its own).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from modelyard.request.dates import parse_duration, parse_window


def _cron(expression: str) -> str:
    from croniter import CroniterBadDateError, croniter

    if not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a cron expression (five fields: minute hour "
                         "day-of-month month day-of-week, such as '0 3 * * 1')")
    try:  # a valid expression can name no real date; the scheduler would fail on it forever
        croniter(expression, _CRON_PROBE_FROM).get_next(dt.datetime)
    except CroniterBadDateError:
        raise ValueError(f"{expression!r} matches no date (such as February 30th), so it "
                         "would never fire; name a day every month it runs in has") from None
    return expression


def _timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone name (such as 'UTC' or "
                         "'Europe/Paris')") from None
    return name


def _duration(text: str) -> str:
    parse_duration(text)
    return text


def _positive(text: str) -> str:
    if parse_duration(text).total_seconds() <= 0:
        raise ValueError(f"{text!r} must be more than 0 (such as '1h' or '7d')")
    return text


def _window(text: str) -> str:
    parse_window(text)  # what monitoring reads: over 0, at most MAX_WINDOW_DAYS
    return text


_CRON_PROBE_FROM = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
Duration = Annotated[str, AfterValidator(_duration)]
Period = Annotated[str, AfterValidator(_positive)]
Window = Annotated[str, AfterValidator(_window)]
TriggerName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: TriggerName | None = Field(None, description="defaults to the type")
    debounce: Duration = Field("1h", description="no second firing of this trigger within it")
    per_tenant: bool = Field(False, description="a fleet: watch and retrain each tenant alone")

    @property
    def key(self) -> str:
        return self.name or self.type

    @property
    def debounce_delta(self) -> dt.timedelta:
        return parse_duration(self.debounce)


class Schedule(_Trigger):
    type: Literal["schedule"]
    cron: Annotated[str, AfterValidator(_cron)]
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"


class NewData(_Trigger):
    type: Literal["new_data"]
    rows: int | None = Field(None, ge=1, description="new rows in the source since training")
    files: bool = Field(False, description="a file under the source path that training did "
                        "not read")
    every: Period | None = Field(None, description="time since the last training")

    @model_validator(mode="after")
    def _something(self) -> NewData:
        if self.rows is None and not self.files and self.every is None:
            raise ValueError("a new_data trigger needs rows, files: true, or every")
        return self


class Drift(_Trigger):
    type: Literal["drift"]
    psi: float = Field(0.25, gt=0, allow_inf_nan=False, description="fires above this PSI")
    top_k: int = Field(5, ge=1, le=1000, description="on any of the k most important features")
    window: Window = "7d"
    min_rows: int = Field(500, ge=1, description="production rows the window needs")


class Decay(_Trigger):
    type: Literal["decay"]
    margin: float = Field(0.02, ge=0, allow_inf_nan=False,
                          description="how far below the holdout figure")
    window: Window = "7d"
    min_labels: int = Field(200, ge=1, description="labelled rows the window needs")
    metric: str | None = Field(None, max_length=64,
                               description="default: the model's policy metric")


Trigger = Annotated[Schedule | NewData | Drift | Decay, Field(discriminator="type")]
