"""Live progress of a job in the terminal (state, current step, elapsed) and result tables."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from modelyard.client import TERMINAL, Client

STATE_STYLE = {"succeeded": "bold green", "failed": "bold red", "cancelled": "yellow",
               "running": "cyan", "queued": "magenta", "created": "magenta"}


def _status_view(status: dict[str, Any], started: float) -> Group:
    state = status["transition"]["job_state"]
    head = Text.assemble(
        ("job ", "dim"), (status["job_id"], "bold"), "  ",
        (state, STATE_STYLE.get(state, "")),
        ("  step: " + (status.get("current_step") or "-"), ""),
        (f"  {time.monotonic() - started:.1f}s", "dim"),
    )
    steps = Table(box=None, show_header=False, pad_edge=False)
    for step in status.get("steps", []):
        info = step.get("info") or {}
        detail = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in info.items() if k not in ("cls",))
        steps.add_row(Text("  done", "green"), step["name"],
                      f"{step['duration_s']:.3f}s" if step.get("duration_s") is not None else "",
                      Text(detail[:100], "dim"))
    return Group(head, steps)


def follow(client: Client, job_id: str, console: Console) -> dict[str, Any]:
    """Show the job's progress until it ends; return the final result answer."""
    started = time.monotonic()
    status = client.status(job_id)
    with Live(_status_view(status, started), console=console, refresh_per_second=8,
              transient=False) as live:
        while status["transition"]["job_state"] not in TERMINAL:
            status = client.status(job_id, wait=0.5)
            live.update(_status_view(status, started))
    _end_line(console)
    return client.result(job_id)


def _end_line(console: Console) -> None:
    """End the last line of a stopped ``Live``. In a terminal rich does it (and rich's
    ``Progress`` does it everywhere); elsewhere ``Live`` prints its final view without the
    newline, and the next heading would continue that line."""
    if not console.is_terminal:
        console.line()


def print_result(answer: dict[str, Any], console: Console) -> None:
    status = answer["status"]
    state = status["transition"]["job_state"]
    if state != "succeeded":
        info = answer.get("exception_info") or {}
        console.print(f"[bold red]job {status['job_id']} {state}[/]: "
                      f"{status['transition'].get('reason', '')}")
        if info.get("type"):
            console.print(f"  {info['type']}: {info.get('message')}")
        console.print(f"  log: {status.get('log_file')}")
        return
    result = answer["result"]
    metrics = Table(title=f"holdout metrics ({result['metrics'].get('task')})", show_header=True)
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        if isinstance(value, float):
            metrics.add_row(name, f"{value:.4f}")
        elif isinstance(value, int | str | bool) and name != "task":
            metrics.add_row(name, str(value))
    console.print(metrics)
    console.print(f"model id        {result['model_id']}")
    console.print(f"rows            {result.get('row_counts')}")
    console.print(f"holdout scores  {result['evaluation_holdout_data_path']}")
    console.print(f"holdout labels  {result['evaluation_holdout_label_path']}")
    console.print(f"provenance      {result.get('provenance_path')}")
    console.print(f"log             {status.get('log_file')}")


def follow_fleet(client: Client, job_id: str, console: Console) -> dict[str, Any]:
    """A progress bar of the fleet (done/total, failures, ETA) until every child has ended."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("planning", total=None, detail="")
        while True:
            status = client.status(job_id, wait=1.0)
            state = status["transition"]["job_state"]
            fleet = client.fleet(job_id)
            c = fleet["counts"]
            done = c["succeeded"] + c["failed"] + c["cancelled"] + c["skipped"]
            if c["planned"]:
                progress.update(task, description="fleet", total=c["total"], completed=done,
                                detail=f"[green]{c['succeeded']} ok[/] [red]{c['failed']} "
                                       f"failed[/] {c['running']} running {c['skipped']} "
                                       "skipped")
            if state in TERMINAL:
                break
    print_fleet(fleet, console)
    return client.result(job_id)


def print_fleet(fleet: dict[str, Any], console: Console) -> None:
    levels: dict[str, int] = {}
    for t in fleet["tenants"]:
        levels[t["level"] or "-"] = levels.get(t["level"] or "-", 0) + 1
    console.print(f"fleet {fleet['parent_id']}: {fleet['state']}  counts {fleet['counts']}")
    console.print("served by: " + ", ".join(f"{k} {v}" for k, v in sorted(levels.items())))
    table = Table(title="tenants (first 15)")
    for col in ("tenant", "rows", "state", "roc_auc", "level", "why"):
        table.add_column(col)
    for t in fleet["tenants"][:15]:
        auc = t["metrics"].get("roc_auc")
        table.add_row(t["tenant"], str(t["rows"]), t["state"],
                      f"{auc:.3f}" if isinstance(auc, float) else "-", t["level"] or "-",
                      t["reason"] or "")
    console.print(table)

