"""``modelyard jobs replay JOB_ID``: train a job's request again and say whether the model is the
same, and if not why."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelyard.cli.console import make_console, url_option
from modelyard.client import Client

console = make_console()
VERDICT_STYLE = {"reproduced": "bold green", "differs": "bold yellow", "failed": "bold red",
                 "pending": "bold"}


@click.command("replay")
@click.argument("job_id")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the replay until it ends and print the comparison.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@url_option
def replay(job_id: str, wait: bool, as_json: bool, url: str | None) -> None:
    """Run succeeded job JOB_ID's request again as a new job (not registered) and compare the
    models: exit 0 if the sha256 matches, 1 if it differs or the replay failed."""
    from modelyard.cli.progress import follow

    with Client(url) as client:
        replay_id = client.replay(job_id)
        console.print(f"replaying job {job_id} as job [bold]{replay_id}[/]")
        if not wait:
            return
        if as_json:
            client.wait(replay_id, raise_on_failure=False)
        else:
            follow(client, replay_id, console)
        compared = client.replay_comparison(replay_id)
    if as_json:
        click.echo(json.dumps(compared, indent=2))
    else:
        print_comparison(compared, console)
    if compared["verdict"] != "reproduced":
        sys.exit(1)


def print_comparison(compared: Mapping[str, Any], console: Console) -> None:
    """What was compared, side by side, then the verdict and why."""
    table = Table(title=f"job {compared['original_job_id']} replayed as "
                        f"{compared['replay_job_id']}")
    for col in ("", "original", "replay", ""):
        table.add_column(col)
    reasons = set(compared["reasons"])
    table.add_row("model sha256", compared["original_model_id"] or "-",
                  compared["replay_model_id"] or "-", _same(compared["same_model"]))
    table.add_row("data fingerprint", compared["original_data_digest"] or "-",
                  compared["replay_data_digest"] or "-", _same("data_changed" not in reasons))
    table.add_row("workflow source", compared["original_workflow_sha256"] or "-",
                  compared["replay_workflow_sha256"] or "-",
                  _same("workflow_code_differs" not in reasons))
    for p in compared["packages"]:
        table.add_row(f"package {p['name']}", p["original"] or "-", p["replay"] or "-",
                      _same(False))
    for f in compared["data_files"]:
        table.add_row(Text(f"file {f['name']}"), f["original"] or "-", f["replay"] or "-",
                      _same(False))
    console.print(table)
    console.print(Text.assemble((compared["verdict"], VERDICT_STYLE[compared["verdict"]]),
                                f": {compared['explanation']}"))


def _same(same: bool | None) -> Text:
    if same is None:
        return Text("-")
    return Text("same", "green") if same else Text("differs", "yellow")
