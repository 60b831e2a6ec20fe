"""Server settings: one frozen object, from CLI flags and ``MODELYARD_*`` environment variables.

Precedence: explicit arguments (CLI flags) over environment over defaults. Everything has a
zero-setup default under ``MODELYARD_HOME`` (``~/.modelyard``): a SQLite job store, a local
artefact folder, a ``data/`` folder that requests may read from, and a ``logs/`` folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelyard.errors import ConfigurationError

# A train request is configuration: 16 MiB holds any real one many times over. Predict bodies
# carry rows, but their values are budgeted (below), and 16 MiB of long strings is what parses
# well within 100 ms; both are refused with 413 before they are read.
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
DEFAULT_MAX_PREDICT_BODY_BYTES = 16 * 2**20
DEFAULT_MAX_PREDICT_ROWS = 10_000  # rows per predict request; more get 422 naming the limit
# JSON values (see modelyard.jsonbody) per predict body: what parses in ~50 ms in the slowest
# shape, so a body within it cannot hold /healthz for 100 ms; 10,000 rows of 10 features.
DEFAULT_MAX_PREDICT_VALUES = 100_000
# Rows of served requests the production log holds before its writer thread takes them (it
# writes every second): a minute of 1,000-row requests at 100 a second would not fit, which is
# the point: past this, requests are dropped from the log (and counted), never slowed.
DEFAULT_LOG_BUFFER_ROWS = 100_000
DEFAULT_SCHEDULER_INTERVAL = 10.0
DEFAULT_TRIGGER_CHECK_INTERVAL = 300.0
DEFAULT_EXPERIMENT_INTERVAL = 5.0
# A server renews its lease every third of this; another takes over its running jobs once it
# has not for this long. Long enough for a busy database's pause, short for a crash's cost.
DEFAULT_LEASE_SECONDS = 15.0
DEFAULT_EXPERIMENT_RETENTION_DAYS = 90.0
# Seconds a server answers /readyz with 503, still serving, between SIGTERM and closing its
# listener: none by default, since a balancer that retries on another replica needs none.
DEFAULT_DRAIN_SECONDS = 0.0


def default_home() -> Path:
    return Path(os.environ.get("MODELYARD_HOME", Path.home() / ".modelyard")).expanduser()


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a server needs to run jobs; build it with :meth:`Settings.load`."""

    home: Path
    db_url: str
    artifact_root: str
    data_roots: tuple[str, ...]
    workflow_modules: tuple[str, ...] = ()
    # Packages a request may name by dotted path, besides the --workflows modules.
    workflow_packages: tuple[str, ...] = ()
    executor: str = "local"
    concurrency: int = 1
    job_timeout: float | None = None
    job_memory_limit: int | None = None
    token: str | None = None
    # Answers show tracebacks and the server's own paths (else they stay in the logs).
    debug: bool = False
    serving_memory_budget: int = 2 * 2**30
    shadow_sample: float = 1.0
    log_sample: float = 1.0  # fraction of predict requests the production log keeps
    log_buffer_rows: int = DEFAULT_LOG_BUFFER_ROWS
    ray_address: str | None = None
    executor_options: tuple[tuple[str, str], ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_predict_body_bytes: int = DEFAULT_MAX_PREDICT_BODY_BYTES
    max_predict_rows: int = DEFAULT_MAX_PREDICT_ROWS
    max_predict_values: int = DEFAULT_MAX_PREDICT_VALUES
    # Folders a pipeline's command step may run a program from, and the image prefixes a step
    # may run in on Kubernetes: none unless the operator says (nothing a request names runs).
    step_commands: tuple[str, ...] = ()
    step_images: tuple[str, ...] = ()
    # Pipelines' triggers fire from `modelyard server` (never from `modelyard serve`) unless
    # --no-scheduler; schedules are looked at every scheduler_interval seconds, the event
    # checks (new data, drift, decay: they read files and the production log) at most every
    # trigger_check_interval seconds.
    scheduler: bool = True
    scheduler_interval: float = DEFAULT_SCHEDULER_INTERVAL
    trigger_check_interval: float = DEFAULT_TRIGGER_CHECK_INTERVAL
    # The experiment controller (beside the scheduler) looks at running experiments this often.
    experiment_interval: float = DEFAULT_EXPERIMENT_INTERVAL
    # Seconds a server's lease on the job store runs (modelyard.jobs.lease).
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # A finished experiment's assignments and outcomes are pruned this long after it ended.
    experiment_retention_days: float = DEFAULT_EXPERIMENT_RETENTION_DAYS
    # After SIGTERM: readiness (/readyz) fails this long while requests are still served, so
    # a load balancer's health check or Kubernetes' readiness probe stops sending new ones
    # before the listener closes (then in-flight requests finish; see modelyard.server).
    drain_seconds: float = DEFAULT_DRAIN_SECONDS

    @property
    def job_threads(self) -> int:
        """A job's default share of the cores for native thread pools: cores / concurrency."""
        return max(1, (os.cpu_count() or 1) // self.concurrency)

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @classmethod
    def load(
        cls,
        *,
        home: str | Path | None = None,
        db_url: str | None = None,
        artifact_root: str | None = None,
        data_roots: Sequence[str | Path] = (),
        workflow_modules: Sequence[str] = (),
        workflow_packages: Sequence[str] = (),
        executor: str | None = None, concurrency: int | None = None,
        job_timeout: float | None = None, job_memory_limit: int | None = None,
        token: str | None = None, debug: bool | None = None,
        serving_memory_budget: int | None = None, shadow_sample: float | None = None,
        log_sample: float | None = None, log_buffer_rows: int | None = None,
        ray_address: str | None = None, executor_options: Sequence[str] = (),
        max_body_bytes: int | None = None, max_predict_body_bytes: int | None = None,
        max_predict_rows: int | None = None, max_predict_values: int | None = None,
        step_commands: Sequence[str | Path] = (), step_images: Sequence[str] = (),
        scheduler: bool | None = None, scheduler_interval: float | None = None,
        trigger_check_interval: float | None = None, experiment_interval: float | None = None,
        lease_seconds: float | None = None, experiment_retention_days: float | None = None,
        drain_seconds: float | None = None,
    ) -> Settings:
        """Resolve settings from arguments, then ``MODELYARD_*`` variables, then defaults."""
        env = os.environ
        home_path = (Path(home).expanduser() if home is not None else default_home()).resolve()
        roots: list[str] = [str(r) for r in data_roots]
        if not roots and env.get("MODELYARD_DATA_ROOTS"):
            roots = [r for r in env["MODELYARD_DATA_ROOTS"].split(os.pathsep) if r]
        if not roots:
            roots = [str(home_path / "data"), os.getcwd()]
        modules = list(workflow_modules) or [
            m for m in env.get("MODELYARD_WORKFLOWS", "").split(os.pathsep) if m]
        conc = concurrency if concurrency is not None else _env_int("MODELYARD_CONCURRENCY")
        if conc is None:
            conc = os.cpu_count() or 1
        if conc < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {conc}")
        timeout = job_timeout if job_timeout is not None else _env_float("MODELYARD_JOB_TIMEOUT")
        memory = (job_memory_limit if job_memory_limit is not None
                  else _env_int("MODELYARD_JOB_MEMORY_LIMIT"))
        return cls(
            home=home_path,
            db_url=db_url or env.get("MODELYARD_DB") or f"sqlite:///{home_path / 'modelyard.db'}",
            artifact_root=artifact_root or env.get("MODELYARD_ARTIFACTS")
            or str(home_path / "artifacts"),
            data_roots=tuple(_normalise_root(r) for r in roots),
            workflow_modules=tuple(modules),
            workflow_packages=tuple(workflow_packages) or tuple(
                p for p in env.get("MODELYARD_WORKFLOW_PACKAGES", "").split(os.pathsep) if p),
            executor=executor or env.get("MODELYARD_EXECUTOR", "local"),
            concurrency=conc,
            job_timeout=timeout,
            job_memory_limit=memory,
            token=token if token is not None else env.get("MODELYARD_TOKEN") or None,
            debug=debug if debug is not None else _env_flag("MODELYARD_DEBUG"),
            serving_memory_budget=serving_memory_budget
            or _env_int("MODELYARD_SERVING_MEMORY") or 2 * 2**30,
            shadow_sample=shadow_sample if shadow_sample is not None
            else (_env_float("MODELYARD_SHADOW_SAMPLE") or 1.0),
            log_sample=_fraction("MODELYARD_LOG_SAMPLE", log_sample, 1.0),
            log_buffer_rows=_positive("MODELYARD_LOG_BUFFER_ROWS", log_buffer_rows,
                                      DEFAULT_LOG_BUFFER_ROWS, "row"),
            ray_address=ray_address or env.get("MODELYARD_RAY_ADDRESS") or None,
            executor_options=tuple(_key_value(o) for o in executor_options),
            max_body_bytes=_byte_limit("MODELYARD_MAX_BODY_BYTES", max_body_bytes,
                                       DEFAULT_MAX_BODY_BYTES),
            max_predict_body_bytes=_byte_limit("MODELYARD_MAX_PREDICT_BODY_BYTES",
                                               max_predict_body_bytes,
                                               DEFAULT_MAX_PREDICT_BODY_BYTES),
            max_predict_rows=_positive("MODELYARD_MAX_PREDICT_ROWS", max_predict_rows,
                                       DEFAULT_MAX_PREDICT_ROWS, "row"),
            max_predict_values=_positive("MODELYARD_MAX_PREDICT_VALUES", max_predict_values,
                                         DEFAULT_MAX_PREDICT_VALUES, "value"),
            **_step_sources(step_commands, step_images),
            **_scheduling(scheduler, scheduler_interval, trigger_check_interval,
                          experiment_interval, lease_seconds),
            experiment_retention_days=_retention_days(experiment_retention_days),
            drain_seconds=_drain_seconds(drain_seconds),
        )

    def ensure_dirs(self) -> None:
        for d in (self.home, self.logs_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)

    def public(self) -> dict[str, Any]:
        """The settings safe to show (no token)."""
        out = dataclasses.asdict(self)
        out["home"] = str(self.home)
        out["token"] = "***" if self.token else None
        return out


def _key_value(option: str) -> tuple[str, str]:
    key, sep, value = option.partition("=")
    if not sep or not key:
        raise ConfigurationError(f"executor option {option!r} must look like KEY=VALUE")
    return key.strip(), value.strip()


def _byte_limit(name: str, given: int | None, default: int) -> int:
    """A body-size limit from its flag, else its variable ``name``, else ``default``."""
    return _positive(name, given, default, "byte")


def _positive(name: str, given: int | None, default: int, unit: str) -> int:
    """A limit from its flag, else its variable ``name``, else ``default``; at least 1."""
    value = given if given is not None else _env_int(name)
    if value is None:
        return default
    if value < 1:
        flag = "--" + name.removeprefix("MODELYARD_").lower().replace("_", "-")
        raise ConfigurationError(f"{flag} ({name}) must be at least 1 {unit}, got {value}")
    return value


def _fraction(name: str, given: float | None, default: float) -> float:
    """A fraction from its flag, else its variable ``name``, else ``default``; 0 to 1."""
    value = given
    if value is None:
        raw = os.environ.get(name)
        try:
            value = float(raw) if raw else None
        except ValueError:
            raise ConfigurationError(f"{name} must be a fraction from 0 to 1, got {raw!r}"
                                     ) from None
    if value is None:
        return default
    if not 0.0 <= value <= 1.0:
        flag = "--" + name.removeprefix("MODELYARD_").lower().replace("_", "-")
        raise ConfigurationError(f"{flag} ({name}) must be a fraction from 0 to 1, got {value}")
    return value


def _normalise_root(root: str) -> str:
    if "://" in root:
        return root.rstrip("/") + "/"
    return str(Path(root).expanduser().resolve())


def _scheduling(on: bool | None, interval: float | None, check_interval: float | None,
                experiment_interval: float | None = None,
                lease_seconds: float | None = None) -> dict[str, Any]:
    """Whether the scheduler runs, how often the loops look, and the server's lease, from
    flags, else variables."""
    out: dict[str, Any] = {"scheduler": on if on is not None else not _env_flag(
        "MODELYARD_NO_SCHEDULER")}
    for key, given, name, default in (
            ("scheduler_interval", interval, "MODELYARD_SCHEDULER_INTERVAL",
             DEFAULT_SCHEDULER_INTERVAL),
            ("trigger_check_interval", check_interval, "MODELYARD_TRIGGER_CHECK_INTERVAL",
             DEFAULT_TRIGGER_CHECK_INTERVAL),
            ("experiment_interval", experiment_interval, "MODELYARD_EXPERIMENT_INTERVAL",
             DEFAULT_EXPERIMENT_INTERVAL),
            ("lease_seconds", lease_seconds, "MODELYARD_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)):
        value = given if given is not None else _env_float(name)
        value = default if value is None else value
        if value <= 0:
            flag = "--" + key.replace("_", "-")
            raise ConfigurationError(f"{flag} ({name}) must be a positive number of seconds, "
                                     f"got {value}")
        out[key] = value
    return out


def _retention_days(given: float | None) -> float:
    value = given if given is not None else _env_float("MODELYARD_EXPERIMENT_RETENTION_DAYS")
    value = DEFAULT_EXPERIMENT_RETENTION_DAYS if value is None else value
    if not value > 0:
        raise ConfigurationError("--experiment-retention-days (MODELYARD_EXPERIMENT_RETENTION_"
                                 f"DAYS) must be a positive number of days, got {value}")
    return value


def _drain_seconds(given: float | None) -> float:
    """``--drain-seconds``, else ``MODELYARD_DRAIN_SECONDS``, else none; 0 or more."""
    value = given if given is not None else _env_float("MODELYARD_DRAIN_SECONDS")
    value = DEFAULT_DRAIN_SECONDS if value is None else value
    if value < 0:
        raise ConfigurationError(f"--drain-seconds (MODELYARD_DRAIN_SECONDS) must be 0 or more "
                                 f"seconds, got {value}")
    return value


def _step_sources(commands: Sequence[str | Path], images: Sequence[str]
                  ) -> dict[str, Any]:
    """``step_commands`` (real paths: a symlinked folder is compared as what it points at) and
    ``step_images``, from their flags, else their variables."""
    folders = [str(d) for d in commands] or _env_list("MODELYARD_STEP_COMMANDS", os.pathsep)
    return {"step_commands": tuple(os.path.realpath(Path(d).expanduser()) for d in folders),
            "step_images": tuple(images) or tuple(_env_list("MODELYARD_STEP_IMAGES", ","))}


def _env_list(name: str, sep: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(sep) if p.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from None
