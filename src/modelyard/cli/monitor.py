"""``modelyard monitor NAME``: drift, decay and staleness of a served model, in the terminal."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from modelyard.cli.console import make_console, url_option
from modelyard.client import Client

console = make_console()
TOP_FEATURES = 15
_BAND_STYLE = {"ok": "green", "moderate": "yellow", "major": "red"}


@click.command()
@click.argument("model_name")
@click.option("--tenant", default=None, help="Tenant (customer); default: the global model.")
@click.option("--window", default="7d", show_default=True,
              help="How far back to look: 30m, 12h, 7d, 2w.")
@click.option("--traffic", default=None,
              help="A parquet file of recent traffic under the server's data roots, instead "
                   "of the production log.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@url_option
def monitor(model_name: str, tenant: str | None, window: str, traffic: str | None,
            as_json: bool, url: str | None) -> None:
    """Feature and prediction drift, schema changes, decay and staleness of MODEL_NAME."""
    with Client(url) as client:
        report = client.monitoring(model_name, tenant=tenant, window=window, traffic=traffic)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    show(report)


def show(report: dict[str, Any]) -> None:
    served = report["served_by_tenant"]
    console.print(
        f"{escape(report['model_name'])} v{report['version']} (tenant {escape(served)}), "
        f"{report['rows']:,} rows from {escape(report['source'])}, "
        f"{report['window_start'][:19]} to {report['window_end'][:19]}", highlight=False)
    if report["features"]:
        console.print(_features(report["features"]))
    else:
        console.print("no rows in the window: nothing to compare", highlight=False)
    prediction = report["prediction"]
    if prediction is not None:
        console.print(
            f"prediction drift: PSI {prediction['psi']:.3f} ({_band(prediction['band'])}), "
            f"KS {prediction['ks_statistic']:.3f}, mean {_num(prediction['mean_reference'])} "
            f"-> {_num(prediction['mean_current'])} over {prediction['rows']:,} scores",
            highlight=False)
    for change in report["schema_changes"]:
        console.print(f"schema: column {escape(change['column'])!r} {change['change']} "
                      f"({change['reference_type'] or '-'} -> {change['current_type'] or '-'})",
                      highlight=False)
    console.print(_decay(report["decay"]))
    console.print(_staleness(report["staleness"]), highlight=False)


def _features(features: list[dict[str, Any]]) -> Table:
    table = Table(title=f"top drifting features (of {len(features)}; by PSI x importance)")
    for col in ("feature", "kind", "PSI", "band", "KS", "nulls (ref -> now)", "importance"):
        table.add_column(col)
    for f in features[:TOP_FEATURES]:
        table.add_row(escape(f["name"]), f["kind"], f"{f['psi']:.3f}", _band(f["band"]),
                      _num(f["ks_statistic"]),
                      f"{f['null_rate_reference']:.1%} -> {f['null_rate_current']:.1%}",
                      f"{f['importance']:.3f}")
    return table


def _decay(decay: dict[str, Any]) -> Table:
    metric = decay["metric"] or "no metric"
    table = Table(title=f"decay: {metric} by window (holdout {_num(decay['holdout_value'])})")
    for col in ("from", "to", "labelled rows", metric):
        table.add_column(col)
    for w in decay["windows"]:
        table.add_row(w["start"][:16], w["end"][:16], f"{w['labelled_rows']:,}",
                      _num(w["value"]))
    return table


def _staleness(s: dict[str, Any]) -> str:
    newest = (f"; newest training row {s['newest_training_row'][:10]} "
              f"({s['newest_training_row_age_days']:.1f} days old)"
              if s["newest_training_row"] else "")
    return (f"staleness: trained {s['trained_at'][:19]} ({s['model_age_days']:.1f} days ago)"
            f"{newest}")


def _band(band: str) -> str:
    return f"[{_BAND_STYLE[band]}]{band}[/]"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
