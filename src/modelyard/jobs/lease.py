"""This server's lease on the job store: registered at start, renewed every third of
``--lease-seconds``, ended at a clean stop.

Each renewal also looks for servers whose lease has run out and takes them over
(:func:`modelyard.jobs.recovery.take_over_expired`): their running jobs fail, naming the server
and its lease, about ``--lease-seconds`` after a crash. A server whose own lease ran out before it
could renew it (the database was out of its reach that long) has been taken over: its running
jobs have failed, and its dispatcher stops their workers at its next check. It then registers
again under a new id and keeps the jobs it claimed since, so it can be taken over again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from modelyard.jobs import recovery, servers
from modelyard.jobs.servers import ServerIdentity
from modelyard.jobs.states import JobState
from modelyard.jobs.tables import JobRow
from modelyard.settings import Settings
from modelyard.sql import make_engine, session_factory, upgrade
from modelyard.ticker import Ticker

log = logging.getLogger("modelyard.dispatcher")


class Lease:
    """Holds ``me``'s lease while started; ``on_failed`` gets the jobs a take-over failed, and
    ``on_new_id`` the server's new id after it was itself taken over."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], me: ServerIdentity,
                 on_failed: Callable[[list[str]], None] = lambda jobs: None,
                 on_new_id: Callable[[str], None] = lambda server_id: None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.me = me
        self.on_failed = on_failed
        self.on_new_id = on_new_id
        self._ticker = Ticker("modelyard-lease", settings.lease_seconds / 3, self.tick, log,
                              "the server's lease could not be renewed; trying again")

    def start(self) -> None:
        """Register (SQLite: refused while another server's lease runs) and start renewing.

        Raises:
            ConfigurationError: SQLite, and another server runs on it.
        """
        with self.sessions() as session:
            servers.register_server(session, self.me, self.settings.lease_seconds,
                                    single=_is_sqlite(self.settings.db_url),
                                    store=_shown(self.settings.db_url))
        self._ticker.start()

    def tick(self) -> None:
        """Renew the lease, then take over the servers whose lease has run out."""
        with self.sessions() as session:
            if not servers.renew_lease(session, self.me.id, self.settings.lease_seconds):
                self._register_again(session)
            failed = recovery.take_over_expired(session, self.me.id)
            session.commit()
        if failed:
            self.on_failed(failed)

    def stop(self) -> None:
        """Stop renewing and end the lease now; a database out of reach leaves it to run out."""
        self._ticker.stop()
        try:
            with self.sessions() as session:
                servers.end_lease(session, self.me.id)
        except Exception:  # the server stops anyway; its lease then simply runs out
            log.exception("could not end this server's lease; it runs out in %g s",
                          self.settings.lease_seconds)

    def _register_again(self, session: Session) -> None:
        old = self.me
        self.me = ServerIdentity.new()
        log.error("this server's lease (%s) ran out before it could renew it, and another "
                  "server took it over: the jobs it was running then have failed; it goes on "
                  "as %s", old.id, self.me.id)
        servers.register_server(session, self.me, self.settings.lease_seconds, single=False,
                                store=_shown(self.settings.db_url))
        # Jobs claimed since the take-over ran on: they are the new lease's to hold.
        session.execute(update(JobRow).where(
            JobRow.server_id == old.id, JobRow.state == JobState.running.value,
        ).values(server_id=self.me.id).execution_options(synchronize_session=False))
        session.commit()
        self.on_new_id(self.me.id)


def refuse_second_server(settings: Settings) -> None:
    """Before a server starts on SQLite: refuse, with what to do, while another one runs on it
    (its start registers again, atomically, in :meth:`Lease.start`).

    Raises:
        ConfigurationError: another server's lease on the SQLite file runs.
    """
    if not _is_sqlite(settings.db_url):
        return
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        with session_factory(engine)() as session:
            servers.refuse_if_held(session, ServerIdentity.new(), _shown(settings.db_url))
    finally:
        engine.dispose()


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
