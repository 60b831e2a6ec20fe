"""The charts a page draws: typed specs that ``static/charts.js`` draws with uPlot.

A page builds a :class:`Chart` (lines or histogram bars) or a :class:`Heatmap` (a confusion
matrix, drawn as a table) and passes it to the ``chart`` macro of ``_macros.html``, which puts
:func:`spec` of it into the page as JSON. Each series carries its own x values, so curves with
different points (two models' ROC curves) overlay without resampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

MAX_POINTS = 2000


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float | None]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"series {self.label!r}: {len(self.x)} x values but "
                             f"{len(self.y)} y values")
        if len(self.x) > MAX_POINTS:
            raise ValueError(f"series {self.label!r}: {len(self.x):,} points; downsample to "
                             f"at most {MAX_POINTS:,} before drawing")


@dataclass(frozen=True)
class Chart:
    """Lines (``line``) or histogram bars (``bars``, x = each bin's left edge)."""

    kind: Literal["line", "bars"]
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series] = field(default_factory=tuple)
    diagonal: bool = False  # the y = x reference of ROC and calibration plots


@dataclass(frozen=True)
class Heatmap:
    """A matrix of counts (rows: actual, columns: predicted), drawn as a shaded table."""

    title: str
    labels: Sequence[str]
    matrix: Sequence[Sequence[int]]
    kind: Literal["heatmap"] = "heatmap"


def spec(chart: Chart | Heatmap) -> dict[str, Any]:
    """The JSON the page carries; NaN and infinities become null (JSON has neither)."""
    out = asdict(chart)
    if isinstance(chart, Chart):
        out["series"] = [{"label": s.label, "x": [_finite(v) for v in s.x],
                          "y": [_finite(v) for v in s.y]} for s in chart.series]
    return out


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
