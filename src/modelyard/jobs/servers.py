"""The servers that share a job store, each with a lease it renews (:mod:`modelyard.jobs.lease`).

A server's row says who it is (host, pid), when it started and until when its lease runs. A
server whose lease has run out is gone, whatever its host. One live server takes it over, once:
:func:`take_over_expired` is a conditional UPDATE (``taken_over_by IS NULL``), so of two servers
looking at once only one gets the row, and :mod:`modelyard.jobs.recovery` fails the jobs it was
running in the same transaction. Its queued jobs were never its own: any server claims them.

Lease times are the database's clock (PostgreSQL's ``clock_timestamp()``), so servers on hosts
whose clocks disagree still agree on whose lease has run out. SQLite holds one server: there
:func:`register_server` refuses a second while the first's lease runs.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from modelyard.errors import ConfigurationError
from modelyard.jobs.tables import ServerRow
from modelyard.sql.base import table_of

_SERVERS = table_of(ServerRow)
FORGET_AFTER = dt.timedelta(days=7)


@dataclass(frozen=True)
class ServerIdentity:
    """Who a server is: ``id`` is ``host/pid/nonce``, new at each start."""

    id: str
    host: str
    pid: int

    @classmethod
    def new(cls) -> ServerIdentity:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}/{pid}/{uuid.uuid4().hex[:8]}", host, pid)


def db_now(session: Session) -> dt.datetime:
    """The time by the database's clock (the host's for SQLite, which has one host)."""
    if session.get_bind().dialect.name == "postgresql":
        at = session.scalar(select(func.clock_timestamp()))
        if isinstance(at, dt.datetime):
            return at.astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


def register_server(session: Session, me: ServerIdentity, lease_s: float, *,
                    single: bool, store: str) -> None:
    """Write ``me``'s row with a lease of ``lease_s`` seconds, and commit.

    ``single``: the store holds one server at a time (SQLite). The row is written first, which
    takes SQLite's write lock until the commit, so of two servers starting at once the second
    sees the first.

    Raises:
        ConfigurationError: ``single``, and another server's lease runs (``store`` names it).
    """
    now = db_now(session)
    session.add(ServerRow(id=me.id, host=me.host, pid=me.pid, started_at=now, renewed_at=now,
                          lease_expires_at=now + dt.timedelta(seconds=lease_s)))
    session.flush()
    if single:
        try:
            refuse_if_held(session, me, store, now)
        except ConfigurationError:
            session.rollback()
            raise
    session.commit()


def refuse_if_held(session: Session, me: ServerIdentity, store: str,
                   now: dt.datetime | None = None) -> None:
    """For a store that holds one server (SQLite): refuse ``me`` while another server's lease
    runs, but for a server of this host whose process is gone (a crash, then a restart).

    Raises:
        ConfigurationError: another server holds ``store``, with what to do.
    """
    others = _live_others(session, me, now or db_now(session))
    if others:
        other = others[0]
        raise ConfigurationError(
            f"another modelyard server ({other.id}) runs on the job store {store}, and "
            f"SQLite holds one server at a time (its lease runs until "
            f"{other.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC); stop that server (or wait "
            "for its lease to run out if it is gone), or use PostgreSQL for several servers "
            "(README, \"Several servers\"). A serving replica (modelyard serve) may share "
            "the file")


def _live_others(session: Session, me: ServerIdentity, now: dt.datetime) -> list[ServerRow]:
    """The other servers whose lease runs, but for those of this host whose process is gone."""
    rows = session.scalars(select(ServerRow).where(
        ServerRow.id != me.id, ServerRow.stopped_at.is_(None),
        ServerRow.taken_over_by.is_(None), ServerRow.lease_expires_at > now)).all()
    return [r for r in rows if r.host != me.host or pid_alive(r.pid)]


def renew_lease(session: Session, server_id: str, lease_s: float) -> bool:
    """Run the server's lease ``lease_s`` seconds from now, and commit. False when it was taken
    over meanwhile (its lease had run out: its running jobs have failed)."""
    now = db_now(session)
    renewed = session.execute(update(_SERVERS).where(
        _SERVERS.c.id == server_id, _SERVERS.c.taken_over_by.is_(None),
    ).values(renewed_at=now, lease_expires_at=now + dt.timedelta(seconds=lease_s)))
    session.commit()
    return bool(renewed.rowcount)  # type: ignore[attr-defined]


def end_lease(session: Session, server_id: str) -> None:
    """A server that stops: its lease ends now, so another server takes over whatever it
    leaves running at its next look. Commits."""
    now = db_now(session)
    session.execute(update(_SERVERS).where(
        _SERVERS.c.id == server_id, _SERVERS.c.taken_over_by.is_(None),
    ).values(stopped_at=now, lease_expires_at=now))
    session.commit()


def take_over_expired(session: Session, me: str) -> list[ServerRow]:
    """Mark the servers whose lease has run out, and that nobody took over yet, as taken over
    by ``me``; each such server goes to one caller only. Does not commit: the caller fails
    their jobs in the same transaction. Returns their rows, oldest lease first.

    Rows of servers taken over more than :data:`FORGET_AFTER` ago go: their jobs keep their
    ``server_id`` and their failures name them."""
    now = db_now(session)
    session.execute(delete(_SERVERS).where(_SERVERS.c.taken_over_at < now - FORGET_AFTER))
    taken = session.scalars(update(_SERVERS).where(
        _SERVERS.c.lease_expires_at <= now, _SERVERS.c.taken_over_by.is_(None),
        _SERVERS.c.id != me,
    ).values(taken_over_by=me, taken_over_at=now).returning(_SERVERS.c.id)).all()
    if not taken:
        return []
    return list(session.scalars(select(ServerRow).where(ServerRow.id.in_(taken))
                                .order_by(ServerRow.lease_expires_at)
                                .execution_options(populate_existing=True)))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
