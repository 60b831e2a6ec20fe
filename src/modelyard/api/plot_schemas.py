"""``GET /jobs/{id}/plots``: a trained job's evaluation plots (:mod:`modelyard.jobs.plots`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, Field

from modelyard.jobs import plots


class Curve(BaseModel):
    label: str
    x: list[float]
    y: list[float]
    area: float | None = Field(None, description="the area under it where that has a name: "
                               "ROC AUC, the PR curve's average precision")


class Histogram(BaseModel):
    label: str
    edges: list[float] = Field(description="bin edges, one more than the counts")
    counts: list[int]


class ConfusionMatrix(BaseModel):
    labels: list[str]
    matrix: list[list[int]] = Field(description="matrix[i][j]: rows of class labels[i] "
                                    "predicted as labels[j]")


class JobPlots(BaseModel):
    """The plots of a job's holdout evaluation that fit its task (the others are null or
    empty); each curve has at most 200 points."""

    job_id: str
    task: Literal["binary", "regression", "multiclass"]
    holdout_rows: int
    positive_class: str | None = None
    roc: Curve | None = Field(None, description="binary: true against false positive rate")
    precision_recall: Curve | None = Field(None, description="binary: precision against recall")
    calibration: Curve | None = Field(None, description="binary: the observed positive rate "
                                      "against the mean score, in 10 bins")
    score_histograms: list[Histogram] = Field(default_factory=list,
                                              description="binary: the scores of each class")
    predicted_vs_actual: Curve | None = Field(None, description="regression: the mean "
                                              "prediction (y) in 50 equal-count bins of the "
                                              "actual value (x)")
    residuals: Histogram | None = Field(None, description="regression: actual - predicted")
    confusion: ConfusionMatrix | None = Field(None, description="multi-class")
    notes: list[str] = Field(default_factory=list, description="why a plot is missing")


def plots_of(found: plots.JobPlots) -> JobPlots:
    return JobPlots.model_validate(dataclasses.asdict(found))
