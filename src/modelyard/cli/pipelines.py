"""``modelyard pipelines ...``: create, list, run, status, logs, cancel, rerun.

``status`` exits 1 when what it shows failed (any pipeline's last run, or the run asked for),
so a cron job or a CI step can report a failing pipeline loudly; 2 is for errors of the
command itself, as elsewhere.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from modelyard.cli.console import add_id_column, make_console, url_option
from modelyard.client import Client
from modelyard.errors import RequestError

console = make_console()


@click.group()
def pipelines() -> None:
    """Pipelines: DAGs of steps (validate data, train, evaluate, validate model, deploy,
    commands), each step a job."""


@pipelines.command("create")
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
@url_option
def create(pipeline_file: str, url: str | None) -> None:
    """Create or replace the pipeline a YAML/JSON file describes."""
    with Client(url) as client:
        answer = client.create_pipeline(pipeline_file)
    console.print(f"pipeline [bold]{escape(answer['name'])}[/]: "
                  f"{' -> '.join(answer['steps'])}", highlight=False)


@pipelines.command("list")
@url_option
def list_(url: str | None) -> None:
    """Every pipeline with its last run."""
    with Client(url) as client:
        answer = client.pipelines()
    _print_pipelines(answer["pipelines"])


@pipelines.command("run")
@click.argument("name")
@click.option("--tenant", default=None, help="Only this tenant of a fleet's train step.")
@click.option("--image", "images", multiple=True, metavar="STEP=IMAGE",
              help="Run STEP in IMAGE for this run (repeatable).")
@click.option("--command", "commands", multiple=True, metavar="STEP='PROGRAM ARGS'",
              help="Run this command for the command step STEP in this run (repeatable).")
@click.option("--wait/--no-wait", default=False, help="Follow the run until it ends; exit 1 "
              "if it does not succeed.")
@url_option
def run(name: str, tenant: str | None, images: tuple[str, ...], commands: tuple[str, ...],
        wait: bool, url: str | None) -> None:
    """Start a run of pipeline NAME."""
    import shlex

    overrides: dict[str, dict[str, Any]] = {}
    for step, image in map(_pair, images):
        overrides.setdefault(step, {})["image"] = image
    for step, command in map(_pair, commands):
        overrides.setdefault(step, {})["command"] = shlex.split(command)
    with Client(url) as client:
        run_id = client.run_pipeline(name, tenant=tenant, overrides=overrides or None)
        console.print(f"started run [bold]{run_id}[/] of {escape(name)}", highlight=False)
        if not wait:
            return
        answer = client.wait_pipeline_run(run_id, on_change=_progress)
    _print_run(answer)
    if answer["state"] != "succeeded":
        sys.exit(1)


@pipelines.command("status")
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@url_option
def status(run_id: str | None, as_json: bool, url: str | None) -> None:
    """Without RUN_ID: every pipeline's last run (exit 1 if any failed, naming them); with
    it: the run's steps (exit 1 if it failed)."""
    with Client(url) as client:
        answer = client.pipeline_run(run_id) if run_id else client.pipelines()
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    elif run_id:
        _print_run(answer)
    else:
        _print_pipelines(answer["pipelines"])
    if run_id and answer["state"] in ("failed", "cancelled"):
        sys.exit(1)
    if not run_id and answer["failing"]:
        console.print(f"[red]failing pipelines[/]: {escape(', '.join(answer['failing']))}",
                      highlight=False)
        sys.exit(1)


@pipelines.command("logs")
@click.argument("run_id")
@click.option("--step", default=None, help="Only this step's log.")
@url_option
def logs(run_id: str, step: str | None, url: str | None) -> None:
    """A run's logs, step by step."""
    with Client(url) as client:
        click.echo(client.pipeline_logs(run_id, step), nl=False)


@pipelines.command("cancel")
@click.argument("run_id")
@url_option
def cancel(run_id: str, url: str | None) -> None:
    """Cancel a run: its steps that have not ended, and their jobs."""
    with Client(url) as client:
        answer = client.cancel_pipeline_run(run_id)
    console.print(f"run {run_id}: {answer['state']}")


@pipelines.command("rerun")
@click.argument("run_id")
@click.option("--from", "from_step", default=None, metavar="STEP",
              help="Reuse the outputs of the steps before STEP and run STEP and everything "
                   "after it again (default: only what failed or changed runs).")
@url_option
def rerun(run_id: str, from_step: str | None, url: str | None) -> None:
    """Run a pipeline run's pipeline again."""
    with Client(url) as client:
        new = client.rerun_pipeline(run_id, from_step)
    console.print(f"started run [bold]{new}[/] (rerun of {run_id})")


@pipelines.command("triggers")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@url_option
def triggers(name: str, as_json: bool, url: str | None) -> None:
    """Each trigger of a pipeline: its last check and why it did or did not fire, its last
    firing and run, a schedule's next due time."""
    with Client(url) as client:
        answer = client.pipeline_triggers(name)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    table = Table(title=f"triggers of {escape(name)}" + (
        "" if answer["scheduler"] else " (this server runs no scheduler)"))
    for column in ("trigger", "tenant", "last check", "fired", "last run", "next due", "note"):
        table.add_column(column)
    for t in answer["triggers"]:
        check = t["last_check"] or {}
        table.add_row(
            escape(t["trigger"]), escape(t["tenant"] or "-"),
            escape(check.get("summary", "not checked yet")),
            f"{t['fired']} (last {t['last_fired_at'] or '-'})", t["last_run_id"] or "-",
            t["next_due_at"] or "-", escape(t["last_error"] or t["last_skip"] or ""))
    console.print(table)


def _pair(text: str) -> tuple[str, str]:
    step, sep, value = text.partition("=")
    if not sep or not step or not value:
        raise RequestError(f"{text!r} is not STEP=VALUE, e.g. score=registry.local/score:dev")
    return step, value


def _progress(answer: dict[str, Any]) -> None:
    shown = "  ".join(f"{s['name']}: {s['state']}" for s in answer["steps"])
    console.print(f"{answer['state']:<10} {escape(shown)}", highlight=False)


def _print_run(answer: dict[str, Any]) -> None:
    table = Table(title=f"run {answer['run_id']} of {answer['pipeline']}: {answer['state']}")
    for col in ("step", "type", "state", "cached"):
        table.add_column(col)
    add_id_column(table, "job")
    table.add_column("says")
    for s in answer["steps"]:
        table.add_row(s["name"], s["type"], s["state"], "yes" if s["cache_hit"] else "",
                      s["job_id"] or "", escape(s["error"] or s["summary"] or ""))
    console.print(table)
    if answer["error"]:
        console.print(f"[red]{escape(answer['error'])}[/]", highlight=False)
    for waiting in answer["waiting_for_approval"]:
        console.print(escape(waiting), highlight=False)


def _print_pipelines(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} pipelines")
    for col in ("pipeline", "model", "steps", "last run", "state", "error"):
        table.add_column(col)
    for p in rows:
        last = p["last_run"] or {}
        state = last.get("state", "never run")
        table.add_row(p["name"], p["model_name"] or "", " -> ".join(p["steps"]),
                      (last.get("created_at") or "")[:19],
                      f"[red]{state}[/]" if p["failing"] else state,
                      escape((last.get("error") or "")[:80]))
    console.print(table)
