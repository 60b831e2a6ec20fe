"""The scheduler: a loop in the server that fires pipelines' triggers.

Every ``--scheduler-interval`` seconds it looks at each pipeline's triggers (a per-tenant
trigger once per tenant that has a production model of its own):

- a ``schedule`` is due when its ``next_due_at`` has passed; the run it starts is recorded with
  the time it was due for, and the next due time is the cron's next after now, so a server
  that was down across one or several due times starts one run when it is back, not none and
  not one per missed time;
- ``new_data``, ``drift`` and ``decay`` are checked at most every ``--trigger-check-interval``
  seconds (:mod:`modelyard.triggers.checks`); a trigger that keeps firing fires again only
  after its ``debounce``.

A firing starts a pipeline run whose ``reason`` says which trigger fired, its figures and its
window. The run and the trigger's new state are written in one transaction, and the state is
moved by a conditional UPDATE on its previous values: two schedulers (two servers on one
PostgreSQL) cannot both fire one due time, and a crash between the two writes leaves neither.
The pipeline store refuses a second active run of one (pipeline, tenant), so a firing while a
run is active starts nothing and says so in the trigger's state (a schedule then waits for its
next due time; an event trigger fires again at its next check if it still holds).

A replica started with ``--no-scheduler`` (and every ``modelyard serve`` replica) never fires.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import zoneinfo
from collections.abc import Callable
from typing import Any

from croniter import croniter
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import Conflict, ModelyardError
from modelyard.pipelines import runs as pipeline_runs
from modelyard.pipelines import store as pipeline_store
from modelyard.pipelines.server_params import train_request
from modelyard.pipelines.tables import PipelineRow
from modelyard.registry import store as registry
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.settings import Settings
from modelyard.triggers import checks
from modelyard.triggers.spec import Decay, Drift, NewData, Schedule, Trigger
from modelyard.triggers.tables import TriggerStateRow

log = logging.getLogger("modelyard.triggers")


@dataclasses.dataclass(frozen=True)
class Watch:
    """One pipeline as its triggers see it."""

    pipeline: str
    created_at: dt.datetime
    model_name: str | None  # the model its drift, decay and new_data triggers watch
    data_path: str | None  # what its train step reads (new_data)
    triggers: list[Trigger]


def _watch(row: PipelineRow, settings: Settings) -> Watch | None:
    try:
        spec = row.parsed_spec
    except ValueError:  # stored by a version whose spec no longer parses: the API says so
        log.warning("pipeline %s: its spec no longer parses; its triggers are not looked at",
                    row.name)
        return None
    if not spec.triggers:  # nothing to watch: its request file need not be read
        return None
    data_path = None
    for step in spec.steps:
        if step.type == "train":
            try:
                data_path = train_request(step, settings.data_roots).data.features.path
            except ModelyardError:
                data_path = None  # a new_data trigger's check says what is wrong
            break
    return Watch(row.name, row.created_at, row.model_name, data_path, list(spec.triggers))


@dataclasses.dataclass(frozen=True)
class Fired:
    """A run a trigger started (or tried to: ``run_id`` None and ``skipped`` says why)."""

    pipeline: str
    trigger: str
    tenant: str | None
    run_id: str | None
    reason: dict[str, Any]
    skipped: str | None = None


def next_due(cron: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The cron's first time strictly after ``after``, in UTC."""
    local = after.astimezone(zoneinfo.ZoneInfo(timezone))
    due: dt.datetime = croniter(cron, local).get_next(dt.datetime)
    return due.astimezone(dt.UTC)


class Scheduler:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 on_run_started: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.on_run_started = on_run_started
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="modelyard-scheduler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.scheduler_interval):
            try:
                fired = self.tick()
            except Exception:  # a database hiccup: the next tick tries again
                log.exception("scheduler tick failed")
                continue
            if any(f.run_id for f in fired) and self.on_run_started is not None:
                self.on_run_started()

    def tick(self, now: dt.datetime | None = None) -> list[Fired]:
        """Look at every trigger once; return what fired."""
        now = now or dt.datetime.now(dt.UTC)
        watches = []
        with self.sessions() as session:
            for row in pipeline_store.list_pipelines(session):
                try:
                    watch = _watch(row, self.settings)
                except Exception:  # one pipeline's spec or files must not stop the others'
                    log.exception("pipeline %s: its triggers could not be read", row.name)
                    continue
                if watch is not None:
                    watches.append(watch)
        fired = []
        for watch in watches:
            for trigger in watch.triggers:
                for tenant in self._tenants(watch.model_name, trigger):
                    try:
                        outcome = self._consider(watch, trigger, tenant, now)
                    except Exception as exc:
                        log.exception("trigger %s of pipeline %s failed", trigger.key,
                                      watch.pipeline)
                        self._record(watch.pipeline, trigger, tenant, last_checked_at=now,
                                     last_error=f"{type(exc).__name__}: {exc}")
                        continue
                    if outcome is not None:
                        fired.append(outcome)
        return fired

    def _tenants(self, model_name: str | None, trigger: Trigger) -> list[str | None]:
        if not trigger.per_tenant or model_name is None:
            return [None]
        with self.sessions() as session:
            rows = registry.list_versions(session, model_name, stage=Stage.production)
        return [r.tenant for r in rows
                if r.tenant != GLOBAL_TENANT and not r.tenant.startswith("segment:")]

    def _consider(self, watch: Watch, trigger: Trigger, tenant: str | None, now: dt.datetime
                  ) -> Fired | None:
        pipeline = watch.pipeline
        with self.sessions() as session:
            state = _state(session, pipeline, trigger.key, tenant)
            if isinstance(trigger, Schedule):
                if state.next_due_at is None:  # first seen: due from the pipeline's creation
                    state.next_due_at = next_due(trigger.cron, trigger.timezone,
                                                 watch.created_at)
                    session.commit()
                if now < state.next_due_at:
                    return None
                reason = {"scheduled_for": state.next_due_at.isoformat(), "cron": trigger.cron,
                          "timezone": trigger.timezone}
                summary = f"due at {state.next_due_at.isoformat()} ({trigger.cron})"
                return self._fire(session, state, pipeline, trigger, tenant, now, summary,
                                  reason, next_due(trigger.cron, trigger.timezone, now))
            if (state.last_checked_at is not None and now - state.last_checked_at
                    < dt.timedelta(seconds=self.settings.trigger_check_interval)):
                return None
        if watch.model_name is None:
            raise ValueError(f"pipeline {pipeline!r} names no model for its {trigger.type} "
                             "trigger to watch: give it model:, or a train step")
        watched = checks.Watched(pipeline, watch.model_name, tenant, watch.data_path)
        with self.sessions() as session:
            check = _check(session, self.settings, watched, trigger, now)
            state = _state(session, pipeline, trigger.key, tenant)
            state.last_checked_at = now
            state.last_check = {"fire": check.fire, "summary": check.summary,
                                "figures": check.figures}
            state.last_error = None
            if not check.fire:
                session.commit()
                return None
            if (state.last_fired_at is not None
                    and now - state.last_fired_at < trigger.debounce_delta):
                until = state.last_fired_at + trigger.debounce_delta
                state.last_skip = f"debounced until {until.isoformat()} ({check.summary})"
                session.commit()
                return None
            return self._fire(session, state, pipeline, trigger, tenant, now, check.summary,
                              check.figures, state.next_due_at)

    def _fire(self, session: Session, state: TriggerStateRow, pipeline: str, trigger: Trigger,
              tenant: str | None, now: dt.datetime, summary: str, figures: dict[str, Any],
              due: dt.datetime | None) -> Fired:
        reason = {"trigger": trigger.key, "type": trigger.type, "tenant": tenant,
                  "summary": summary, "figures": figures, "at": now.isoformat()}
        previous = (state.last_fired_at, state.next_due_at)
        last_check = state.last_check  # a rollback below would expire it to the stored one
        claimed = session.execute(update(TriggerStateRow).where(
            TriggerStateRow.pipeline == pipeline, TriggerStateRow.trigger == trigger.key,
            TriggerStateRow.tenant == (tenant or ""),
            _same(TriggerStateRow.last_fired_at, previous[0]),
            _same(TriggerStateRow.next_due_at, previous[1]),
        ).values(last_fired_at=now, next_due_at=due, fired=TriggerStateRow.fired + 1,
                 last_checked_at=now, last_check=last_check, last_skip=None,
                 last_error=None).execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()  # another scheduler fired this one a moment ago
            return Fired(pipeline, trigger.key, tenant, None, reason, "fired by another server")
        try:  # commits the run and the claim above together, or neither
            run = pipeline_runs.start_run(session, pipeline, tenant=tenant, reason=reason,
                                          started_by=f"trigger:{trigger.key}")
        except Conflict as exc:
            session.rollback()
            skip = f"{summary}; started nothing: {exc}"
            if isinstance(trigger, Schedule):  # this due time is spent; the next one waits
                self._record(pipeline, trigger, tenant, next_due_at=due, last_skip=skip,
                             last_checked_at=now)
            else:
                self._record(pipeline, trigger, tenant, last_skip=skip, last_checked_at=now,
                             last_check=last_check)
            log.info("trigger %s of pipeline %s fired, but %s", trigger.key, pipeline, exc)
            return Fired(pipeline, trigger.key, tenant, None, reason, str(exc))
        self._record(pipeline, trigger, tenant, last_run_id=run.id)
        log.info("trigger %s of pipeline %s%s started run %s: %s", trigger.key, pipeline,
                 f" (tenant {tenant})" if tenant else "", run.id, summary)
        return Fired(pipeline, trigger.key, tenant, run.id, reason)

    def _record(self, pipeline: str, trigger: Trigger, tenant: str | None,
                **values: Any) -> None:
        with self.sessions() as session:
            _state(session, pipeline, trigger.key, tenant)
            session.execute(update(TriggerStateRow).where(
                TriggerStateRow.pipeline == pipeline, TriggerStateRow.trigger == trigger.key,
                TriggerStateRow.tenant == (tenant or "")).values(**values))
            session.commit()


def _check(session: Session, settings: Settings, watched: checks.Watched, trigger: Trigger,
           now: dt.datetime) -> checks.Check:
    if isinstance(trigger, NewData):
        return checks.check_new_data(session, settings, watched, trigger, now)
    if isinstance(trigger, Drift):
        return checks.check_drift(session, settings, watched, trigger, now)
    if isinstance(trigger, Decay):
        return checks.check_decay(session, settings, watched, trigger, now)
    raise TypeError(f"no check for a {trigger.type} trigger")


def _same(column: Any, value: dt.datetime | None) -> Any:
    return column.is_(None) if value is None else column == value


def _state(session: Session, pipeline: str, trigger: str, tenant: str | None) -> TriggerStateRow:
    """The trigger's state row, created (and committed) the first time it is needed."""
    key = (pipeline, trigger, tenant or "")
    row = session.get(TriggerStateRow, key)
    if row is None:
        session.add(TriggerStateRow(pipeline=pipeline, trigger=trigger, tenant=tenant or "",
                                    fired=0))
        try:
            session.commit()
        except Exception:  # another scheduler created it first
            session.rollback()
        row = session.get(TriggerStateRow, key)
        if row is None:
            raise LookupError(f"trigger state {key} vanished")
    return row


def trigger_states(session: Session, pipeline: str) -> list[TriggerStateRow]:
    """Each trigger's state of a pipeline (what ``GET /pipelines/{name}/triggers`` shows)."""
    return list(session.scalars(select(TriggerStateRow).where(
        TriggerStateRow.pipeline == pipeline).order_by(TriggerStateRow.trigger,
                                                        TriggerStateRow.tenant)))


def count_firings(session: Session) -> dict[tuple[str, str], int]:
    """Runs each trigger started, by (pipeline, trigger name), over its tenants: the
    ``fired`` counts the scheduler keeps in the transaction that starts each run."""
    rows = session.execute(select(TriggerStateRow.pipeline, TriggerStateRow.trigger,
                                  func.sum(TriggerStateRow.fired))
                           .group_by(TriggerStateRow.pipeline, TriggerStateRow.trigger))
    return {(pipeline, trigger): int(fired or 0) for pipeline, trigger, fired in rows}
