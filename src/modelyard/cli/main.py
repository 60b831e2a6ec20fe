"""The ``modelyard`` command: server, train, jobs, validate, demo, models, experiments,
pipelines, tokens."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from modelyard._version import __version__
from modelyard.cli.console import add_id_column, make_console, url_option
from modelyard.errors import JobFailed, ModelyardError

console = make_console()


def _client(url: str | None) -> Any:
    from modelyard.client import Client

    return Client(url)


def _exit_unless_succeeded(answer: dict[str, Any]) -> None:
    """Exit 1 if the job ended failed or cancelled (2 is for errors of the command itself)."""
    from modelyard.client import TERMINAL

    state = answer["status"]["transition"]["job_state"]
    if state in TERMINAL and state != "succeeded":
        sys.exit(1)


@click.group()
@click.version_option(__version__, prog_name="modelyard")
def cli() -> None:
    """Modelyard: describe the data, write train(), get a model."""


def _server_options(func: Any) -> Any:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option("--port", default=8765, show_default=True, type=int),
        click.option("--home", type=click.Path(file_okay=False), default=None,
                     help="State folder (default $MODELYARD_HOME or ~/.modelyard)."),
        click.option("--data-root", "data_roots", multiple=True,
                     help="Folder or URL prefix requests may read from (repeatable; default: "
                          "HOME/data and the working directory)."),
        click.option("--workflows", "workflow_modules", multiple=True,
                     help="Module or .py file whose Workflow classes are registered by name "
                          "(repeatable)."),
        click.option("--workflow-package", "workflow_packages", multiple=True,
                     help="Package whose classes a request may name by dotted path "
                          "'package.module:Class' (repeatable; nothing else is imported from "
                          "a request)."),
        click.option("--db", "db_url", default=None,
                     help="Job store URL (default SQLite in HOME)."),
        click.option("--artifacts", "artifact_root", default=None,
                     help="Artefact store folder or fsspec URL (default HOME/artifacts)."),
        click.option("--serving-memory-budget", type=int, default=None,
                     help="Bytes of loaded models kept in memory for serving (default 2 GiB)."),
        click.option("--shadow-sample", type=float, default=None,
                     help="Fraction of requests shadow versions also score (default 1)."),
        click.option("--log-sample", type=float, default=None,
                     help="Fraction of predict requests the production log keeps for "
                          "monitoring and labels (default 1; 0 turns it off)."),
        click.option("--log-buffer-rows", "log_buffer_rows", type=int, default=None,
                     help="Rows the production log buffers before they are written; requests "
                          "that do not fit are dropped from the log and counted (default "
                          "100,000)."),
        click.option("--max-body-bytes", type=int, default=None,
                     help="Largest request body, in bytes, of every route but predict; larger "
                          "ones get 413 before they are read (default 16 MiB)."),
        click.option("--max-predict-body-bytes", type=int, default=None,
                     help="Largest POST /predict/{name} body, in bytes (default 16 MiB)."),
        click.option("--max-predict-rows", type=int, default=None,
                     help="Most rows in one POST /predict/{name} request; more get 422 "
                          "(default 10,000)."),
        click.option("--max-predict-values", type=int, default=None,
                     help="Most JSON values in one POST /predict/{name} body (rows x features, "
                          "roughly); more get 422 before they are parsed, which keeps a large "
                          "body from stalling the server (default 100,000)."),
        click.option("--debug", is_flag=True, default=None,
                     help="Show tracebacks and the server's own paths in error answers "
                          "(default $MODELYARD_DEBUG; else they stay in the logs)."),
        click.option("--drain-seconds", type=float, default=None,
                     help="After SIGTERM, seconds /readyz answers 503 while requests are still "
                          "served, before the listener closes and in-flight requests finish: "
                          "at least the load balancer's (or readiness probe's) time to notice "
                          "(default 0; MODELYARD_DRAIN_SECONDS)."),
        click.option("--log-level", default="info", show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def forget_working_directory() -> None:
    """Take the working directory off the import path (what ``python -P`` does): the server
    imports workflows only from where the operator said, and its workers and scorers inherit
    its path. ``python -m modelyard`` puts it first; the ``modelyard`` script does not."""
    if not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


def _run(host: str, port: int, log_level: str, run_jobs: bool, options: dict[str, Any]) -> None:
    from modelyard.server import serve
    from modelyard.settings import Settings

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    forget_working_directory()
    settings = Settings.load(**options)
    console.print(f"modelyard {__version__} {'server' if run_jobs else 'serving replica'} on "
                  f"http://{host}:{port}  home={settings.home}  "
                  f"data roots={list(settings.data_roots)}", highlight=False)
    serve(settings, host=host, port=port, log_level=log_level, run_jobs=run_jobs)


@cli.command()
@_server_options
@click.option("--executor", default=None,
              help="Where jobs run: local (default), ray, kubernetes.")
@click.option("--ray-address", default=None,
              help="Ray cluster for --executor ray: auto, HOST:PORT of its head node, or "
                   "ray://HOST:10001 (Ray Client). --artifacts must reach every node.")
@click.option("--executor-option", "executor_options", multiple=True,
              help="KEY=VALUE for the executor (e.g. namespace=ml, image=...; repeatable).")
@click.option("--concurrency", type=int, default=None, help="Jobs at once (default: CPU count).")
@click.option("--job-timeout", type=float, default=None,
              help="Seconds before a job is killed (a request's timeout_seconds wins).")
@click.option("--job-memory-limit", type=int, default=None,
              help="Address-space limit of each worker process, in bytes.")
@click.option("--step-commands", "step_commands", multiple=True,
              type=click.Path(file_okay=False),
              help="Folder whose executables a pipeline's command steps may run (repeatable; "
                   "default $MODELYARD_STEP_COMMANDS, colon-separated; none: no command step "
                   "runs).")
@click.option("--step-images", "step_images", multiple=True,
              help="Image prefix a pipeline step may name to run in on Kubernetes (repeatable; "
                   "default $MODELYARD_STEP_IMAGES, comma-separated; none: no step image).")
@click.option("--scheduler/--no-scheduler", default=None,
              help="Fire pipelines' triggers from this server (default on; "
                   "MODELYARD_NO_SCHEDULER=1 turns it off).")
@click.option("--scheduler-interval", type=float, default=None,
              help="Seconds between the scheduler's looks at schedules (default 10).")
@click.option("--trigger-check-interval", type=float, default=None,
              help="Seconds between checks of new_data, drift and decay triggers (default 300).")
@click.option("--experiment-interval", type=float, default=None,
              help="Seconds between the experiment controller's looks: bandit weights, rollout "
                   "stages and guardrails, stopping rules (default 5).")
@click.option("--lease-seconds", type=float, default=None,
              help="Seconds this server's lease on the job store runs; it renews it every "
                   "third of that, and once it has not for this long another server fails its "
                   "running jobs (default 15; MODELYARD_LEASE_SECONDS).")
@click.option("--experiment-retention-days", type=float, default=None,
              help="Days a finished experiment's assignments and outcomes are kept before the "
                   "controller prunes them; its final scorecard stays (default 90).")
def server(host: str, port: int, log_level: str, **options: Any) -> None:
    """Run the training server (HTTP API, job store, workers, registry and serving)."""
    _run(host, port, log_level, True, options)


@cli.command()
@_server_options
def serve(host: str, port: int, log_level: str, **options: Any) -> None:
    """Run a serving replica: predict, labels, registry; no training (scale it out behind a
    load balancer, all replicas on the same --db and --artifacts)."""
    _run(host, port, log_level, False, options)


@cli.command()
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False))
def validate(request_file: str) -> None:
    """Check a request file against the contract without submitting it."""
    from modelyard.request import load_request

    request = load_request(request_file)
    console.print(f"[green]valid[/]: {request.metadata.model_name} "
                  f"({request.train.workflow_name}), hash {request.request_hash()}")


@cli.command()
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--wait/--no-wait", default=False, help="Follow the job until it ends.")
@url_option
def train(request_file: str, wait: bool, url: str | None) -> None:
    """Submit a train request (YAML or JSON); with --wait, exit 1 if the job does not succeed."""
    from modelyard.cli.outcome import print_outcome
    from modelyard.cli.progress import follow, follow_fleet
    from modelyard.request import load_request

    request = load_request(request_file)
    with _client(url) as client:
        job_id = client.train(request)
        console.print(f"submitted job [bold]{job_id}[/]")
        if not wait:
            return
        follow_job = follow_fleet if request.tenants is not None else follow
        answer = follow_job(client, job_id, console)
        print_outcome(client, answer, console)
    _exit_unless_succeeded(answer)


@cli.group()
def jobs() -> None:
    """List, inspect, follow, cancel and replay jobs."""


@jobs.command("list")
@click.option("--state", default=None)
@click.option("--owner", default=None)
@click.option("--project", default=None)
@click.option("--model-name", default=None)
@click.option("--parent-id", default=None, help="Only the children of this fleet.")
@click.option("--limit", default=20, show_default=True)
@click.option("--offset", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@url_option
def jobs_list(url: str | None, as_json: bool, **filters: Any) -> None:
    """Jobs, newest first."""
    with _client(url) as client:
        answer = client.jobs(**filters)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    table = Table(title=f"{answer['total']} jobs (showing {len(answer['jobs'])})")
    add_id_column(table, "job id")
    for col in ("state", "model", "owner", "project", "step", "created", "error"):
        table.add_column(col)
    for job in answer["jobs"]:
        table.add_row(job["job_id"], job["state"], job["model_name"], job["owner"],
                      job["project"], job["current_step"] or "", job["created_at"][:19],
                      Text((job["error"] or "")[:60]))
    console.print(table)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@url_option
def jobs_show(job_id: str, url: str | None, as_json: bool) -> None:
    """A job's status, steps and result, or why it failed (then exit 1)."""
    from modelyard.cli.outcome import print_outcome

    with _client(url) as client:
        answer = client.job(job_id)
        if as_json:
            click.echo(json.dumps(answer, indent=2))
        else:
            _print_history(answer["status"])
            print_outcome(client, answer, console)
    _exit_unless_succeeded(answer)


def _print_history(status: dict[str, Any]) -> None:
    """A job's transitions with their reasons, and its steps with their timings."""
    for t in status["transitions"]:
        console.print(f"{t['created_at'][:23]}  {t['job_state']:<10} {escape(t['reason'])}",
                      highlight=False)
    for s in status["steps"]:
        took = "running" if s["duration_s"] is None else f"{s['duration_s']:.3f}s"
        console.print(f"  step {s['name']:<18} {took}  {escape(str(s.get('info') or ''))}",
                      highlight=False)


@jobs.command("logs")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@url_option
def jobs_logs(job_id: str, follow: bool, url: str | None) -> None:
    """A job's log."""
    from modelyard.client import TERMINAL

    with _client(url) as client:
        text, offset = client.logs(job_id)
        click.echo(text, nl=False)
        while follow:
            state = client.status(job_id, wait=1.0)["transition"]["job_state"]
            text, offset = client.logs(job_id, offset)
            click.echo(text, nl=False)
            if state in TERMINAL:
                break


@jobs.command("cancel")
@click.argument("job_id")
@url_option
def jobs_cancel(job_id: str, url: str | None) -> None:
    """Cancel a queued or running job (its worker is killed)."""
    with _client(url) as client:
        status = client.cancel(job_id)
    console.print(f"job {job_id}: {status['transition']['job_state']}")


@cli.command()
@click.option("--home", type=click.Path(file_okay=False), default="modelyard-demo",
              show_default=True, help="Where the demo keeps its data, job store and artefacts.")
@click.option("--rows", type=int, default=None,
              help="Synthetic charges to generate [default: 300,000; --continuous 40,000].")
@click.option("--merchants", default=1_000, show_default=True)
@click.option("--continuous", is_flag=True,
              help="Run the closed loop instead: serve, drift, a trigger retrains, shadow, "
                   "approval, a switch without a failed request.")
def demo(home: str, rows: int | None, merchants: int, continuous: bool) -> None:
    """Generate synthetic payments, start an embedded server, train a fraud model, show it."""
    if continuous:
        from modelyard.cli.continuous import run_continuous

        ok = run_continuous(Path(home), rows=rows or 40_000, console=console)
    else:
        from modelyard.cli.demo import run_demo

        ok = run_demo(Path(home), rows=rows or 300_000, merchants=merchants, console=console)
    if not ok:
        sys.exit(1)


def _register_groups() -> None:
    from modelyard.cli.experiments import experiments
    from modelyard.cli.models import models
    from modelyard.cli.monitor import monitor
    from modelyard.cli.pipelines import pipelines
    from modelyard.cli.replay import replay
    from modelyard.cli.tokens import tokens

    cli.add_command(models)
    cli.add_command(experiments)
    cli.add_command(pipelines)
    cli.add_command(monitor)
    cli.add_command(tokens)
    jobs.add_command(replay)


_register_groups()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except JobFailed as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        sys.exit(1)
    except ModelyardError as exc:
        # Escaped: messages carry brackets, e.g. "pip install 'modelyard[postgres]'".
        console.print(f"[red]error[/]: {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
