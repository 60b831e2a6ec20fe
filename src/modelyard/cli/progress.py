"""Live progress of a job in the terminal: state, current step and elapsed time of a job; done,
failed and ETA of a fleet.

Each view long-polls the server (it answers as soon as the job changes), so a long job costs a
request every half second or so however long it runs. Out of a terminal rich prints only the final
view, when the display stops.
"""

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


def follow_fleet(client: Client, job_id: str, console: Console) -> dict[str, Any]:
    """A progress bar of the fleet (done/total, failures, ETA) until every child has ended;
    return the fleet job's final result answer."""
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
    return client.result(job_id)
