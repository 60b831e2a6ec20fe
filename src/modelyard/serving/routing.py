"""Which version answers a request: the tenant's production model, else the global one.

The routing table is a snapshot of the registry, replaced whole (one reference swap) when the
registry changes, so a request sees either the old production version or the new one, never a
half-updated table. A background thread polls the registry's generation (cheap) to notice
changes made by any server.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import NotFound
from modelyard.registry import store as registry
from modelyard.registry.stages import GLOBAL_TENANT, SERVED_STAGES, Stage
from modelyard.registry.tables import FleetTenantRow, VersionRow
from modelyard.serving.loading import VersionRef

log = logging.getLogger("modelyard.serving")


@dataclass(frozen=True)
class Route:
    production: VersionRef
    shadows: tuple[VersionRef, ...] = ()


@dataclass
class Table:
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    segments: dict[tuple[str, str], str] = field(default_factory=dict)
    generation: Any = None


def version_ref(row: VersionRow) -> VersionRef:
    """What serving needs of a registered version to load and check it."""
    missing = row.model_meta.get("missing_values")
    return VersionRef(model_name=row.model_name, tenant=row.tenant, version=row.version,
                      model_id=row.model_id, job_id=row.job_id,
                      features=tuple(row.model_meta.get("features", [])),
                      missing_values=tuple(missing) if missing is not None else None)


class Router:
    def __init__(self, sessions: sessionmaker[Session], poll_s: float = 0.5) -> None:
        self.sessions = sessions
        self.poll_s = poll_s
        self._table = Table()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="modelyard-router", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # keep serving the last table if the database hiccups
                log.exception("routing table refresh failed; serving the previous one")

    def refresh(self, force: bool = False) -> bool:
        """Rebuild the table if the registry changed; True if it did."""
        with self.sessions() as session:
            gen = registry.generation(session)
            if not force and gen == self._table.generation:
                return False
            rows = session.scalars(select(VersionRow).where(
                VersionRow.stage.in_(SERVED_STAGES))).all()
            segments = {(r.model_name, r.tenant): r.segment
                        for r in session.scalars(select(FleetTenantRow).where(
                            FleetTenantRow.segment.is_not(None))).all()
                        if r.segment is not None}
        production: dict[tuple[str, str], VersionRef] = {}
        shadows: dict[tuple[str, str], list[VersionRef]] = {}
        for row in rows:
            key = (row.model_name, row.tenant)
            if row.stage == Stage.production.value:
                production[key] = version_ref(row)
            else:
                shadows.setdefault(key, []).append(version_ref(row))
        routes = {key: Route(ref, tuple(sorted(shadows.get(key, []), key=lambda r: r.version)))
                  for key, ref in production.items()}
        self._table = Table(routes=routes, segments=segments, generation=gen)  # atomic swap
        return True

    def resolve(self, model_name: str, tenant: str | None) -> tuple[Route, str]:
        """The route for ``tenant`` (falling back to its segment's model, then the global one)
        and the registry tenant that answers.

        Raises:
            NotFound: the model has no production version for the tenant nor a global one.
        """
        table = self._table
        routes = table.routes
        tried = []
        if tenant and tenant != GLOBAL_TENANT:
            route = routes.get((model_name, tenant))
            if route is not None:
                return route, tenant
            tried.append(f"tenant {tenant!r}")
            segment = table.segments.get((model_name, tenant))
            if segment is not None:  # a fleet's middle level: tenant -> segment -> global
                route = routes.get((model_name, f"segment:{segment}"))
                if route is not None:
                    return route, f"segment:{segment}"
                tried.append(f"its segment {segment!r} (tenant 'segment:{segment}')")
        route = routes.get((model_name, GLOBAL_TENANT))
        if route is not None:
            return route, GLOBAL_TENANT
        tried.append("the global model (tenant '*')")
        if any(name == model_name for name, _ in routes):
            raise NotFound(f"model {model_name!r} has no production version for "
                           f"{', then '.join(tried)}; approve a version of one of them (POST "
                           f"/models/{model_name}/versions/N/approve with its tenant); a "
                           "fleet's summary (GET /jobs/{id}/fleet) lists the tenants not served")
        raise NotFound(f"no production version of model {model_name!r}; approve one with "
                       f"POST /models/{model_name}/versions/N/approve")

    def production_of(self, model_name: str, tenant: str) -> VersionRef | None:
        """The production version of exactly (model, tenant), no fallback; None if none."""
        route = self._table.routes.get((model_name, tenant))
        return route.production if route is not None else None

    @property
    def size(self) -> int:
        return len(self._table.routes)
