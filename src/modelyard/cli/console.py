"""The CLI's rich console, the table column that holds ids, and the ``--url`` option of every
command that talks to a server.

In a terminal, rich fits each table to the window by shortening cells (``4b755b4…``). Anywhere
else (a pipe, a file, a CI log) the output is read by programs, or by people who copy an id from
it into the next command, so tables take their natural width there: a cut id can be neither
pasted nor matched. In a terminal, id columns do not wrap, so the other columns give way first.
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

url_option = click.option("--url", envvar="MODELYARD_URL", default=None,
                          help="Server URL (default $MODELYARD_URL or http://127.0.0.1:8765).")

# Wide enough for any table the CLI prints; rich pads a table to its own width, not to this.
UNBOUNDED_WIDTH = 10_000


def make_console() -> Console:
    """The console the commands print to: terminal width in a terminal, unbounded elsewhere."""
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = UNBOUNDED_WIDTH
    return console


def add_id_column(table: Table, header: str) -> None:
    """A column of ids (job ids, tenants): kept whole while the others shrink."""
    table.add_column(header, no_wrap=True)
