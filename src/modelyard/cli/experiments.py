"""``modelyard experiments ...``: create, list, show (the scorecard), stop, ship."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from modelyard.cli.console import add_id_column, make_console, url_option
from modelyard.client import Client
from modelyard.errors import RequestError
from modelyard.request.loading import read_document

console = make_console()


@click.group()
def experiments() -> None:
    """Online experiments between registered versions: ab, rollout, bandit."""


@experiments.command("create")
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False))
@url_option
def create(spec_file: str, url: str | None) -> None:
    """Start the experiment a YAML/JSON file describes (the body of POST /experiments)."""
    with Client(url) as client:
        spec = read_document(Path(spec_file), "experiment")
        if not isinstance(spec, dict):
            raise RequestError(f"{spec_file}: an experiment is a mapping (model_name, type, "
                               "arms, ...)")
        answer = client.create_experiment(spec)
    console.print(f"experiment [bold]{answer['id']}[/] running: {answer['type']} on "
                  f"{escape(answer['model_name'])} (tenant {escape(answer['tenant'])})",
                  highlight=False)


@experiments.command("list")
@click.option("--model", "model_name", default=None, help="Only this model's.")
@click.option("--state", default=None, help="running, halted, stopped, concluded, shipped.")
@url_option
def list_(model_name: str | None, state: str | None, url: str | None) -> None:
    """Experiments, newest first."""
    with Client(url) as client:
        found = client.experiments(model_name, state)
    table = Table("model", "tenant", "type", "state", "arms", "winner", "created")
    add_id_column(table, "id")
    for e in found:
        arms = ", ".join(f"{a['name']}=v{a['version']}" for a in e["spec"]["arms"])
        table.add_row(escape(e["model_name"]), escape(e["tenant"]), e["type"], e["state"],
                      escape(arms), escape(e["winner"] or ""), e["created_at"][:19], e["id"])
    console.print(table)


@experiments.command("show")
@click.argument("experiment_id")
@click.option("--json", "as_json", is_flag=True, help="The scorecard as JSON.")
@url_option
def show(experiment_id: str, as_json: bool, url: str | None) -> None:
    """The scorecard: per arm traffic, outcomes, metric with its interval, lift, guardrails,
    and the recommendation."""
    with Client(url) as client:
        card = client.experiment(experiment_id)
    if as_json:
        click.echo(json.dumps(card, indent=2))
        return
    _print_card(card)


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def _pair(x: list[float] | None, fmt: str = ".4f") -> str:
    return "-" if x is None else f"[{format(x[0], fmt)}, {format(x[1], fmt)}]"


def _print_card(card: dict[str, Any]) -> None:
    console.print(f"experiment [bold]{card['id']}[/]: {card['type']} on "
                  f"{escape(card['model_name'])} (tenant {escape(card['tenant'])}), "
                  f"{card['state']}", highlight=False)
    if card["spec"]["hypothesis"]:
        console.print(f"hypothesis: {escape(card['spec']['hypothesis'])}", highlight=False)
    table = Table("arm", "version", "share", "requests", "errors", "outcomes",
                  card["spec"]["primary_metric"], "95% interval", "lift", "lift interval",
                  "sequential p", "P(best)")
    for a in card["arms"]:
        table.add_row(escape(a["name"]) + (" (control)" if a["control"] else ""),
                      str(a["version"]), f"{a['weight']:.1%}", f"{a['requests']:,}",
                      f"{a['errors']:,}", f"{a['outcomes']:,}", _num(a["mean"]),
                      _pair(a["interval"]), _num(a["lift"], "+.2%"),
                      _pair(a["lift_interval"], "+.2%"), _num(a["p_value"]),
                      _num(a["prob_best"], ".3f"))
    console.print(table)
    for g in card["guardrails"]:
        colour = {"ok": "green", "broken": "red"}.get(g["status"], "yellow")
        console.print(f"guardrail {g['name']} on {escape(g['arm'])}: {_num(g['value'], '.4g')}"
                      f" (bound {g['bound']:g}) [{colour}]{g['status']}[/]", highlight=False)
    rec = card["recommendation"]
    console.print(f"recommendation: [bold]{rec['action']}[/]"
                  + (f" {escape(rec['arm'])}" if rec["arm"] else "")
                  + f": {escape(rec['reason'])}", highlight=False)
    console.print(f"method: {card['method']}", highlight=False)
    console.print(f"outcomes late: {card['late_outcomes']}, duplicate: "
                  f"{card['duplicate_outcomes']}, unknown: {card['unknown_outcomes']}")
    if card["reason"]:
        console.print(f"ended: {escape(card['reason'])}", highlight=False)


@experiments.command("stop")
@click.argument("experiment_id")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.option("--actor", default=None, help="Who (ignored when the server has tokens).")
@url_option
def stop(experiment_id: str, reason: str, actor: str | None, url: str | None) -> None:
    """Stop it: all traffic back to production."""
    with Client(url) as client:
        answer = client.stop_experiment(experiment_id, reason=reason, actor=actor)
    console.print(f"experiment {answer['id']} {answer['state']}")


@experiments.command("ship")
@click.argument("experiment_id")
@click.option("--arm", default=None, help="The arm to ship (default: the recommended one).")
@click.option("--comment", default="", help="The approval's comment.")
@click.option("--user", default=None, help="Who approves (ignored when the server has tokens).")
@url_option
def ship(experiment_id: str, arm: str | None, comment: str, user: str | None,
         url: str | None) -> None:
    """Ship the winner through the model's approval gate: it becomes production."""
    with Client(url) as client:
        answer = client.ship_experiment(experiment_id, arm=arm, comment=comment, user=user)
    console.print(f"experiment {answer['id']} {answer['state']}: {escape(answer['winner'])} "
                  "is production", highlight=False)
