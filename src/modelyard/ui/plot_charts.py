"""A job's evaluation plots (:mod:`modelyard.jobs.plots`) as the charts a page draws
(:mod:`modelyard.ui.charts`): one job's on the job page, several jobs' curves overlaid on the
compare page."""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.jobs.plots import Curve, Histogram, JobPlots
from modelyard.ui.charts import Chart, Heatmap, Series

NamedChart = tuple[str, Chart | Heatmap]  # the chart's element id, and the chart


def job_charts(plots: JobPlots) -> list[NamedChart]:
    """The charts of one job's task, in the order the page shows them."""
    out: list[NamedChart] = []
    if plots.roc is not None:
        out.append(("roc", roc_chart([("ROC", plots.roc)])))
    if plots.precision_recall is not None:
        out.append(("pr", pr_chart([("precision-recall", plots.precision_recall)])))
    if plots.calibration is not None:
        out.append(("calibration", Chart(
            "line", "Calibration", "mean score", "observed positive rate",
            [_series("observed", plots.calibration)], diagonal=True)))
    if plots.score_histograms:
        out.append(("scores", _bars("Scores by class", "score", plots.score_histograms)))
    if plots.predicted_vs_actual is not None:
        fit = plots.predicted_vs_actual
        out.append(("predicted", Chart("line", "Predicted against actual", "actual",
                                       "mean predicted", [
            _series("predicted", fit), Series("actual = predicted", fit.x, fit.x)])))
    if plots.residuals is not None:
        out.append(("residuals", _bars("Residuals", "actual - predicted", [plots.residuals])))
    if plots.confusion is not None:
        out.append(("confusion", Heatmap("Confusion matrix", plots.confusion.labels,
                                         plots.confusion.matrix)))
    return out


def roc_chart(curves: Sequence[tuple[str, Curve]]) -> Chart:
    """ROC curves, one series per (name, curve), with each one's AUC in its label."""
    return Chart("line", "ROC", "false positive rate", "true positive rate",
                 [_series(_named(name, "AUC", c), c) for name, c in curves], diagonal=True)


def pr_chart(curves: Sequence[tuple[str, Curve]]) -> Chart:
    return Chart("line", "Precision-recall", "recall", "precision",
                 [_series(_named(name, "AP", c), c) for name, c in curves])


def _named(name: str, area_name: str, curve: Curve) -> str:
    return f"{name} ({area_name} {curve.area:.4g})" if curve.area is not None else name


def _series(label: str, curve: Curve) -> Series:
    return Series(label, curve.x, curve.y)


def _bars(title: str, x_label: str, histograms: Sequence[Histogram]) -> Chart:
    # Bars share their x values: the histograms of one chart are cut at the same edges.
    return Chart("bars", title, x_label, "rows",
                 [Series(h.label, h.edges[:-1], [float(c) for c in h.counts])
                  for h in histograms])
