"""The pipeline runner: a small loop service, started with the server's dispatcher, that
advances every active run (:func:`modelyard.pipelines.advance.advance_run`).

It holds no state of its own: runs, steps, their jobs and outputs live in the database, so a
server that restarts picks its runs up where they were, and several servers on one PostgreSQL
can run it side by side. It looks every :data:`TICK_S`, and at once when woken: a run was
started or cancelled, or a job changed (the dispatcher's notices).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from modelyard.pipelines.advance import advance_run
from modelyard.pipelines.cache import UNCACHED
from modelyard.pipelines.store import active_run_ids
from modelyard.pipelines.store import now as store_now
from modelyard.pipelines.tables import PipelineRunStepRow
from modelyard.settings import Settings

log = logging.getLogger("modelyard.pipelines")

TICK_S = 1.0


class PipelineRunner:
    """Advances pipeline runs; start with :meth:`start`, stop with :meth:`stop`.

    Args:
        wake_dispatcher: called when steps queued jobs, so they are claimed at once.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 wake_dispatcher: Callable[[], None]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.wake_dispatcher = wake_dispatcher
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._recovered_at = 0.0

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="modelyard-pipelines",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def recover(self) -> None:
        """Steps the server runs itself that were under way when a server stopped start over:
        they have no job to wait for, and deciding or moving a version again is harmless.

        Such a step runs within one pass of a runner, well within a lease; one running longer
        than ``--lease-seconds`` was left by a server that is gone, while a younger one may be
        another live server's, under way. Looked at at start and every lease from then on.
        """
        self._recovered_at = time.monotonic()
        left_before = store_now() - dt.timedelta(seconds=self.settings.lease_seconds)
        with self.sessions() as session:
            session.execute(update(PipelineRunStepRow).where(
                PipelineRunStepRow.state == "running", PipelineRunStepRow.job_id.is_(None),
                PipelineRunStepRow.type.in_(sorted(UNCACHED)),
                PipelineRunStepRow.started_at < left_before).values(state="pending"))
            session.commit()

    def tick(self) -> None:
        """One pass over every active run."""
        with self.sessions() as session:
            run_ids = active_run_ids(session)
        queued = False
        for run_id in run_ids:
            with self.sessions() as session:
                try:
                    queued = advance_run(session, run_id, self.settings) or queued
                except Exception:  # one broken run must not stop the others
                    session.rollback()
                    log.exception("pipeline run %s could not advance; retrying", run_id)
        if queued:
            self.wake_dispatcher()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                if time.monotonic() - self._recovered_at > self.settings.lease_seconds:
                    self.recover()
                self.tick()
            except Exception:
                log.exception("pipeline runner pass failed; continuing")
