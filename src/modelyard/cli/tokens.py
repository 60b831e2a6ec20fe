"""``modelyard tokens ...``: API tokens, on the server's database directly.

These commands open the database that ``modelyard server`` uses (the same ``--home`` and
``--db``, or ``MODELYARD_HOME`` and ``MODELYARD_DB``), not the HTTP API: that is how the first
token of a server is made, before any token could call it, and whoever can open the database
administers the server anyway. An admin elsewhere uses ``POST /tokens`` (``Client.create_token``).
Running servers see a new or revoked token within seconds.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from modelyard.auth.roles import Role
from modelyard.cli.console import add_id_column, make_console

if TYPE_CHECKING:  # the token store loads SQLAlchemy: only these commands need it
    from sqlalchemy.orm import Session

console = make_console()


def _db_options(func: Any) -> Any:
    func = click.option("--db", "db_url", default=None,
                        help="The server's database URL (default $MODELYARD_DB, else SQLite "
                             "in HOME).")(func)
    return click.option("--home", type=click.Path(file_okay=False), default=None,
                        help="The server's state folder (default $MODELYARD_HOME or "
                             "~/.modelyard).")(func)


@contextlib.contextmanager
def _session(home: str | None, db_url: str | None) -> Iterator[Session]:
    from modelyard.settings import Settings
    from modelyard.sql import make_engine, session_factory, upgrade

    settings = Settings.load(home=home, db_url=db_url)
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)  # a server that never ran yet: its schema, then its first token
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _operator() -> str:
    """Who ran the command, for ``created_by`` and ``revoked_by``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment (a bare container)
        return "cli"


@click.group()
def tokens() -> None:
    """API tokens: who may call the server, and in which role (on the server's database)."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True,
              help="viewer: reads; trainer: + train, cancel, predict, labels; approver: + "
                   "approve, stages, rollback, policy; admin: + tokens.")
@_db_options
def create(name: str, role: str, home: str | None, db_url: str | None) -> None:
    """Create a token for NAME (the identity audits record) and print it, this once."""
    from modelyard.auth import tokens as store  # loads SQLAlchemy: here only

    with _session(home, db_url) as session:
        row, token = store.create_token(session, name, Role(role), created_by=_operator())
    click.echo(token)
    click.echo(f"token for {row.name!r} ({row.role}): shown this once, stored only as its "
               "sha256; send it as 'Authorization: Bearer <token>' (the client and CLI read "
               "MODELYARD_TOKEN)", err=True)


@tokens.command("list")
@click.option("--all", "revoked", is_flag=True, help="Revoked tokens too.")
@click.option("--json", "as_json", is_flag=True)
@_db_options
def list_tokens(revoked: bool, as_json: bool, home: str | None, db_url: str | None) -> None:
    """Tokens by name and role (never the tokens: they are not stored)."""
    from modelyard.auth import tokens as store  # loads SQLAlchemy: here only

    with _session(home, db_url) as session:
        rows: list[dict[str, Any]] = [
            {"name": r.name, "role": r.role, "created_at": r.created_at.isoformat(),
             "created_by": r.created_by,
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None}
            for r in store.list_tokens(session, revoked=revoked)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} tokens")
    add_id_column(table, "name")
    for column in ("role", "created", "by", "revoked"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], r["role"], r["created_at"][:19], r["created_by"],
                      (r["revoked_at"] or "")[:19])
    console.print(table)


@tokens.command("revoke")
@click.argument("name")
@_db_options
def revoke(name: str, home: str | None, db_url: str | None) -> None:
    """Revoke NAME's token (running servers refuse it within seconds)."""
    from modelyard.auth import tokens as store  # loads SQLAlchemy: here only

    with _session(home, db_url) as session:
        row = store.revoke_token(session, name, revoked_by=_operator())
    console.print(f"revoked the token of {row.name!r} ({row.role})", highlight=False)
