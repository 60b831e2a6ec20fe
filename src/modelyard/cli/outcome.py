"""What a job ended with, in the terminal: a model's metrics and paths, a fleet's tenants, or why
it failed.

A failure is shown from the job's last transition (its one-line reason) and its
``exception_info`` (type, step, message, a crashed worker's exit code). A fleet fails when none of
its models succeeded, or when its plan failed; the reason then lies in its children's errors, so
the first few failed children are read and shown with a count of the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelyard.cli.console import add_id_column
from modelyard.client import TERMINAL, Client

FAILED_CHILDREN_SHOWN = 5
TENANTS_SHOWN = 15


def print_outcome(client: Client, answer: Mapping[str, Any], console: Console) -> None:
    """The end of a job of any kind: a fleet's summary or a model's result, then any failure."""
    status = answer["status"]
    state = status["transition"]["job_state"]
    if status["kind"] != "fleet":
        print_result(answer, console)
        return
    fleet = client.fleet(status["job_id"])
    print_fleet(fleet, console)
    if state in TERMINAL and state != "succeeded":
        print_failure(answer, console)
        print_failed_children(client, fleet, console)


def print_result(answer: Mapping[str, Any], console: Console) -> None:
    """A model's holdout metrics and paths; why it failed; or, still running, where its log is."""
    status = answer["status"]
    state = status["transition"]["job_state"]
    if state != "succeeded" or answer.get("result") is None:
        if state in TERMINAL:
            print_failure(answer, console)
        else:
            console.print(f"log             {status.get('log_file')}", highlight=False)
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


def error_line(info: Mapping[str, Any]) -> str:
    """``Type in step S: message`` of an ``exception_info``, with a crashed worker's exit code."""
    where = f" in step {info['step']}" if info.get("step") else ""
    line = f"{info.get('type') or 'Error'}{where}: {info.get('message') or ''}"
    if info.get("exitcode") is not None:
        line += f" (exit code {info['exitcode']})"
    return line


def print_failure(answer: Mapping[str, Any], console: Console) -> None:
    """A job that ended without succeeding: its state and reason, its error, and its log."""
    status = answer["status"]
    transition = status["transition"]
    reason = transition.get("reason") or ""
    console.print(Text.assemble((f"job {status['job_id']} {transition['job_state']}", "bold red"),
                                f": {reason}"))
    info = answer.get("exception_info")
    if info:
        line = error_line(info)
        if line != reason:  # platform failures' reasons may leave out the type or the step
            console.print(Text(f"  error  {line}"))
    console.print(Text(f"  log    {status.get('log_file')}"))


@dataclass(frozen=True)
class FailedChild:
    """A fleet's child job (its latest attempt) that failed."""

    kind: str  # global, segment or tenant
    tenant: str
    job_id: str


def failed_children(fleet: Mapping[str, Any]) -> list[FailedChild]:
    """The fleet's failed children: the fallback models first, then tenants, largest first."""
    fallbacks = [FailedChild(c["kind"], c["tenant"], c["job_id"]) for c in fleet["fallbacks"]
                 if c["state"] == "failed"]
    tenants = [FailedChild("tenant", t["tenant"], t["job_id"]) for t in fleet["tenants"]
               if t["state"] == "failed" and t["job_id"]]
    return fallbacks + tenants


def print_failed_children(client: Client, fleet: Mapping[str, Any], console: Console) -> None:
    """The first few failed children of a fleet with their errors, and how many more failed."""
    failed = failed_children(fleet)
    if not failed:
        return
    shown = failed[:FAILED_CHILDREN_SHOWN]
    table = Table(title=f"failed children ({len(shown)} of {len(failed)})")
    add_id_column(table, "job id")
    table.add_column("kind")
    add_id_column(table, "tenant")
    table.add_column("error")
    for child in shown:
        info = client.result(child.job_id).get("exception_info") or {}
        table.add_row(child.job_id, child.kind, child.tenant,
                      Text(error_line(info) if info else "(no error recorded)"))
    console.print(table)
    if len(failed) > len(shown):
        console.print(f"and {len(failed) - len(shown)} more failed children: modelyard jobs list "
                      f"--parent-id {fleet['parent_id']} --state failed", highlight=False)


def print_fleet(fleet: Mapping[str, Any], console: Console) -> None:
    """A fleet's counts, which level serves its tenants, and its first tenants."""
    console.print(f"fleet {fleet['parent_id']}: {fleet['state']}  counts {fleet['counts']}")
    if not fleet["tenants"]:
        console.print("no tenants: the fleet has no plan")
        return
    levels: dict[str, int] = {}
    for t in fleet["tenants"]:
        levels[t["level"] or "-"] = levels.get(t["level"] or "-", 0) + 1
    console.print("served by: " + ", ".join(f"{k} {v}" for k, v in sorted(levels.items())))
    table = Table(title=f"tenants (first {TENANTS_SHOWN})")
    add_id_column(table, "tenant")
    for col in ("rows", "state", "roc_auc", "level", "why"):
        table.add_column(col)
    for t in fleet["tenants"][:TENANTS_SHOWN]:
        auc = t["metrics"].get("roc_auc")
        table.add_row(t["tenant"], str(t["rows"]), t["state"],
                      f"{auc:.3f}" if isinstance(auc, float) else "-", t["level"] or "-",
                      Text(t["reason"] or ""))
    console.print(table)
