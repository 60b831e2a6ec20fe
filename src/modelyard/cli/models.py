"""``modelyard models ...``: the registry from the terminal."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from modelyard.cli.console import add_id_column, make_console, url_option
from modelyard.client import Client

console = make_console()
WHO = ("Your name, for the audit trail, on a server without tokens (a server with tokens "
       "records the token's name).")
tenant_option = click.option("--tenant", default="*", show_default=True,
                             help="Tenant (customer); '*' is the global model.")


@click.group()
def models() -> None:
    """Registered models: versions, stages, approvals, rollback, comparisons."""


@models.command("list")
@url_option
def models_list(url: str | None) -> None:
    with Client(url) as client:
        rows = client.models()
    table = Table(title=f"{len(rows)} models")
    for col in ("model", "versions", "tenants", "shadows", "production", "latest"):
        table.add_column(col)
    for m in rows:
        prod = ", ".join(f"{t}: v{v}" for t, v in m["production"].items()) or "-"
        table.add_row(m["model_name"], str(m["versions"]), str(m["tenants"]), str(m["shadows"]),
                      prod, m["latest_at"][:19])
    console.print(table)


@models.command("versions")
@click.argument("model_name")
@click.option("--tenant", default=None)
@click.option("--stage", default=None)
@click.option("--json", "as_json", is_flag=True)
@url_option
def versions(model_name: str, tenant: str | None, stage: str | None, as_json: bool,
             url: str | None) -> None:
    with Client(url) as client:
        rows = client.versions(model_name, tenant=tenant, stage=stage)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=model_name)
    add_id_column(table, "tenant")
    for col in ("version", "stage", "roc_auc", "rmse", "model id"):
        table.add_column(col)
    add_id_column(table, "job")
    table.add_column("created")
    for v in rows:
        m = v["metrics"]
        table.add_row(v["tenant"], str(v["version"]), v["stage"], _fmt(m.get("roc_auc")),
                      _fmt(m.get("rmse")), v["model_id"][:19], v["job_id"] or "",
                      v["created_at"][:19])
    console.print(table)


@models.command("compare")
@click.argument("model_name")
@click.argument("a", type=int)
@click.argument("b", type=int)
@tenant_option
@url_option
def compare(model_name: str, a: int, b: int, tenant: str, url: str | None) -> None:
    """Two versions' holdout metrics side by side."""
    with Client(url) as client:
        out = client.compare(model_name, a, b, tenant=tenant)
    table = Table(title=f"{model_name}: v{a} vs v{b}"
                  + ("" if out["same_holdout"] else " (different holdout windows!)"))
    for col in ("metric", f"v{a} ({out['a']['stage']})", f"v{b} ({out['b']['stage']})", "b - a"):
        table.add_column(col, justify="right")
    for row in out["metrics"]:
        table.add_row(row["metric"], _fmt(row["a"]), _fmt(row["b"]), _fmt(row["delta"], sign=True))
    console.print(table)
    same = out.get("same_rows")
    if same:
        rows = f"{same['rows']:,} " if isinstance(same.get("rows"), int) else ""
        psi = same.get("score_psi")
        title = (f"on the same {rows}holdout rows of v{same['challenger']} (champion "
                 f"v{same['champion']})" + (f", score PSI {psi:.4f}" if psi is not None else ""))
        table = Table(title=title)
        for col in ("metric", f"v{same['champion']} (champion)",
                    f"v{same['challenger']} (challenger)", "challenger - champion"):
            table.add_column(col, justify="right")
        for row in same["metrics"]:
            table.add_row(row["metric"], _fmt(row["champion"]), _fmt(row["challenger"]),
                          _fmt(row["delta"], sign=True))
        console.print(table)
    _print_importance(out, a, b)


def _print_importance(out: dict[str, Any], a: int, b: int) -> None:
    """The features' global importances in both versions, the most important first."""
    rows = out.get("importance") or []
    if not rows:
        return
    table = Table(title="feature importance (measured when each trained; sums to 1)")
    for col in ("feature", f"v{a}", f"v{b}", "b - a"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(row["feature"], _fmt(row["a"]), _fmt(row["b"]), _fmt(row["delta"], sign=True))
    console.print(table)


@models.command("stage")
@click.argument("model_name")
@click.argument("version", type=int)
@click.argument("stage", type=click.Choice(["candidate", "shadow", "production", "archived"]))
@click.option("--actor", default=None, help=WHO)
@click.option("--reason", default="")
@tenant_option
@url_option
def stage(model_name: str, version: int, stage: str, actor: str | None, reason: str, tenant: str,
          url: str | None) -> None:
    """Move a version to another stage (production needs an approval or the policy)."""
    with Client(url) as client:
        v = client.set_stage(model_name, version, stage, actor=actor, reason=reason,
                             tenant=tenant)
    console.print(f"{model_name} v{v['version']} ({v['tenant']}): {v['stage']}")


@models.command("approve")
@click.argument("model_name")
@click.argument("version", type=int)
@click.option("--user", default=None, help=WHO)
@click.option("--comment", required=True)
@tenant_option
@url_option
def approve(model_name: str, version: int, user: str | None, comment: str, tenant: str,
            url: str | None) -> None:
    """Approve a version: it goes to production (four eyes: not one your own job trained)."""
    with Client(url) as client:
        v = client.approve(model_name, version, user=user, comment=comment, tenant=tenant)
        by = client.whoami()["name"] or user
    console.print(f"{model_name} v{v['version']} ({v['tenant']}): {v['stage']}, approved by {by}")


@models.command("rollback")
@click.argument("model_name")
@click.option("--actor", default=None, help=WHO)
@click.option("--reason", default="")
@tenant_option
@url_option
def rollback(model_name: str, actor: str | None, reason: str, tenant: str,
             url: str | None) -> None:
    """Put the previous production version back."""
    with Client(url) as client:
        v = client.rollback(model_name, actor=actor, reason=reason, tenant=tenant)
    console.print(f"{model_name} ({v['tenant']}): v{v['version']} is production again")


@models.command("labels")
@click.argument("model_name")
@click.argument("path")
@click.option("--strict", is_flag=True, help="Refuse every label (store none) if any matches "
              "no logged prediction.")
@url_option
def labels(model_name: str, path: str, strict: bool, url: str | None) -> None:
    """Add labels from a parquet PATH under the server's data roots (columns request_id, label
    and optionally row), for the shadow report's AUCs; say how many match logged predictions."""
    with Client(url) as client:
        added = client.add_labels(model_name, path=path, strict=strict)
    console.print(f"{added['labels']:,} labels added to {model_name!r}: {added['matched']:,} "
                  f"matched a logged prediction, {added['unknown']:,} unknown (stored), "
                  f"{added['duplicates']:,} duplicates (the latest counts)", highlight=False)
    if added["unknown_examples"]:
        console.print("unknown: " + ", ".join(f"{x['request_id']} row {x['row']}"
                                             for x in added["unknown_examples"]),
                      highlight=False, markup=False)


@models.command("shadow-report")
@click.argument("model_name")
@click.option("--threshold", default=0.5, show_default=True, help="Decision threshold.")
@click.option("--tenant", default=None)
@url_option
def shadow_report(model_name: str, threshold: float, tenant: str | None,
                  url: str | None) -> None:
    """Shadow versions against production on the same traffic."""
    with Client(url) as client:
        report = client.shadow_report(model_name, threshold=threshold, tenant=tenant)
    console.print_json(json.dumps(report))


@models.command("events")
@click.argument("model_name")
@click.option("--tenant", default=None)
@url_option
def events(model_name: str, tenant: str | None, url: str | None) -> None:
    """The audit trail of stage changes."""
    with Client(url) as client:
        rows = client.events(model_name, tenant=tenant)
    for e in rows:
        console.print(f"{e['at'][:19]}  {e['tenant']} v{e['version']}: "
                      f"{e['from_stage'] or '-'} -> {e['to_stage']}  by {e['actor']}: "
                      f"{e['reason']}", highlight=False)


@models.command("policy")
@click.argument("model_name")
@click.option("--auto-promote/--no-auto-promote", default=None)
@click.option("--metric", default=None)
@click.option("--min-improvement", type=float, default=None)
@click.option("--higher-is-better/--lower-is-better", default=None)
@click.option("--require-same-holdout/--any-holdout", default=None,
              help="Without a same-rows comparison, compare stored metrics only if the holdout "
                   "windows match.")
@click.option("--four-eyes/--no-four-eyes", default=None,
              help="Whether an approver may not approve what their own job trained.")
@click.option("--min-holdout-rows", type=int, default=None, help="Guard rail (0: off).")
@click.option("--min-holdout-positives", type=int, default=None, help="Guard rail (0: off).")
@click.option("--max-score-psi", type=float, default=None,
              help="Guard rail: the most scores may shift from production's (PSI, same rows).")
@click.option("--max-latency-ms-per-row", type=float, default=None, help="Guard rail.")
@click.option("--no-max-score-psi", is_flag=True, help="Turn the PSI guard rail off.")
@click.option("--no-max-latency", is_flag=True, help="Turn the latency guard rail off.")
@click.option("--fleet-promotion", type=click.Choice(["auto", "shadow"]), default=None,
              help="What a fleet does with models that pass its rules.")
@click.option("--actor", default=None, help=WHO)
@url_option
def policy(model_name: str, actor: str | None, url: str | None, no_max_score_psi: bool,
           no_max_latency: bool, **given: Any) -> None:
    """Show or set the promotion policy: the auto-promotion rule, four eyes, guard rails and
    what fleets may do alone. Options not given keep their current values."""
    changes = {k: v for k, v in given.items() if v is not None}
    if no_max_score_psi:
        changes["max_score_psi"] = None
    if no_max_latency:
        changes["max_latency_ms_per_row"] = None
    with Client(url) as client:
        current: dict[str, Any] = client.policy(model_name)
        if changes:
            # The policy's fields are what the server answers, less whose and when it is.
            fields = {k: v for k, v in current.items()
                      if k not in ("model_name", "updated_by", "updated_at")}
            current = client.set_policy(model_name, actor=actor, **{**fields, **changes})
    click.echo(json.dumps(current, indent=2))


@models.command("export")
@click.argument("model_name")
@click.argument("version", type=int)
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["folder", "mlflow"]), default="folder",
              show_default=True,
              help="folder: predict.py and the model; mlflow: an MLflow pyfunc model "
                   "(needs pip install 'modelyard[mlflow]' here, not on the server).")
@tenant_option
@url_option
def export(model_name: str, version: int, dest: str, fmt: str, tenant: str,
           url: str | None) -> None:
    """Write a version as a folder that loads without Modelyard running."""
    with Client(url) as client:
        folder = client.export(model_name, version, dest, tenant=tenant,
                               format="mlflow" if fmt == "mlflow" else "folder")
    how = (f"mlflow.pyfunc.load_model('{folder}')" if fmt == "mlflow"
           else f"python {folder}/predict.py rows.parquet")
    console.print(f"exported to {folder} ({how})", highlight=False)


def _fmt(value: Any, sign: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.4f}" if sign else f"{value:.4f}"
    return str(value)
