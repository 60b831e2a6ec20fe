"""Degraded serving: a production version that cannot be loaded, and what answers instead.

A version whose bytes are corrupt or missing, or whose workflow no longer builds, is not tried
again on every request (a load reads and hashes the whole model): it is remembered as broken
and retried every :data:`RETRY_S`. Meanwhile the version this process served before for the
same (model, tenant) answers, and the state is visible three ways: each answer says
``degraded`` with the version that should have answered and why, ``/healthz`` and
``/serving/stats`` list every degraded (model, tenant) whose broken version is still in
production, and the registry's audit log records it once for the version
(:func:`modelyard.registry.audit.record_degraded`). ``/healthz`` needs no token, so a reason
never shows the server's own folders: they read ``<artifacts>`` and ``<home>``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from concurrent.futures import Executor
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from modelyard.registry import audit
from modelyard.registry.versions import read_version
from modelyard.serving.loading import VersionRef
from modelyard.serving.routing import Router

log = logging.getLogger("modelyard.serving")
RETRY_S = 30.0  # how often a version that failed to load is tried again


@dataclasses.dataclass(frozen=True)
class Degraded:
    """A (model, tenant) whose production version cannot be served."""

    model_name: str
    tenant: str
    wanted_version: int
    wanted_model_id: str
    serving_version: int | None  # what answers instead (None: nothing, requests get 503)
    reason: str
    since: dt.datetime

    def public(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "tenant": self.tenant,
                "wanted_version": self.wanted_version, "serving_version": self.serving_version,
                "reason": self.reason, "since": self.since.isoformat()}

    def audit_reason(self) -> str:
        instead = (f"version {self.serving_version} answers instead"
                   if self.serving_version is not None else "no earlier version answers")
        return f"version {self.wanted_version} cannot be loaded ({self.reason}); {instead}"


class DegradedTracker:
    """Which versions failed to load, and which (model, tenant) are served degraded.

    Written on the event loop (each predict), read from any thread (``/healthz``)."""

    def __init__(self, sessions: sessionmaker[Session], router: Router, pool: Executor,
                 folders: dict[str, str] | None = None) -> None:
        self._sessions = sessions
        self._router = router
        self._pool = pool
        # Local folder -> placeholder, innermost first (the artefact store is inside home).
        self._folders: list[tuple[str, str]] = []
        for folder, placeholder in (folders or {}).items():
            if "://" in folder or not os.path.isabs(folder):
                continue  # an object store's URL is configuration, not the server's layout
            for variant in {folder.rstrip(os.sep), os.path.realpath(folder).rstrip(os.sep)}:
                self._folders.append((variant, placeholder))
        self._folders.sort(key=lambda f: len(f[0]), reverse=True)
        self._broken: dict[str, tuple[str, float]] = {}  # model id -> (reason, retry at)
        self._states: dict[tuple[str, str], Degraded] = {}
        self._lock = threading.Lock()

    def broken(self, ref: VersionRef) -> str | None:
        """Why ``ref`` failed to load, while it is not yet due to be tried again."""
        found = self._broken.get(ref.model_id)
        if found is None or time.monotonic() >= found[1]:
            return None
        return found[0]

    def failed(self, ref: VersionRef, exc: BaseException) -> str:
        """Remember that ``ref`` failed to load; returns the reason, in a line."""
        text = " ".join(str(exc).split())
        for folder, placeholder in self._folders:
            text = text.replace(folder, placeholder)
        reason = f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__
        self._broken[ref.model_id] = (reason, time.monotonic() + RETRY_S)
        return reason

    def loaded(self, ref: VersionRef) -> None:
        """``ref`` loaded: whatever was degraded for its (model, tenant) is over."""
        self._broken.pop(ref.model_id, None)
        with self._lock:
            state = self._states.pop((ref.model_name, ref.tenant), None)
        if state is not None:
            log.info("%s v%s (%s) serves again", ref.model_name, ref.version, ref.tenant)

    def serving(self, ref: VersionRef, instead: VersionRef | None, reason: str) -> Degraded:
        """``instead`` answers for ``ref`` (None: nothing does). Recorded in the audit log the
        first time for the version."""
        key = (ref.model_name, ref.tenant)
        serving_version = instead.version if instead is not None else None
        with self._lock:
            state = self._states.get(key)
            if (state is not None and state.wanted_model_id == ref.model_id
                    and state.serving_version == serving_version):
                return state
            state = Degraded(ref.model_name, ref.tenant, ref.version, ref.model_id,
                             serving_version, reason, dt.datetime.now(dt.UTC))
            self._states[key] = state
        log.warning("serving degraded: %s (%s): %s", ref.model_name, ref.tenant,
                    state.audit_reason())
        self._pool.submit(self._audit, state)
        return state

    def current(self) -> list[Degraded]:
        """The degraded (model, tenant) whose broken version is still their production."""
        with self._lock:
            states = list(self._states.values())
        out = []
        for state in states:
            production = self._router.production_of(state.model_name, state.tenant)
            if production is not None and production.model_id == state.wanted_model_id:
                out.append(state)
        return out

    def _audit(self, state: Degraded) -> None:
        try:
            with self._sessions() as session:
                row = read_version(session, state.model_name, state.wanted_version,
                                   state.tenant)
                if audit.record_degraded(session, row, state.audit_reason()):
                    session.commit()
        except Exception:  # the audit must never fail a request; the log has it
            log.exception("could not record degraded serving of %s v%s in the audit log",
                          state.model_name, state.wanted_version)
