"""The pipeline methods of :class:`modelyard.client.Client` (``/pipelines``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

RUN_ENDED = {"succeeded", "failed", "cancelled"}


class PipelinesMixin:
    """Create, list, run, follow, cancel and rerun pipelines."""

    _call: Callable[..., httpx.Response]

    def create_pipeline(self, spec: Mapping[str, Any] | str | Path | Any) -> dict[str, Any]:
        """Create or replace a pipeline (a mapping, a ``PipelineSpec``, or a YAML/JSON file,
        read and checked here first)."""
        from modelyard.pipelines.loading import load_pipeline, parse_pipeline

        parsed = (load_pipeline(spec) if isinstance(spec, str | Path)
                  else parse_pipeline(spec))
        return dict(self._call("POST", "/pipelines", json=parsed.to_json()).json())

    def pipelines(self) -> dict[str, Any]:
        """``{"pipelines": [...each with its last run...], "failing": [names]}``."""
        return dict(self._call("GET", "/pipelines").json())

    def pipeline(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/pipelines/{name}").json())

    def run_pipeline(self, name: str, *, tenant: str | None = None,
                     overrides: Mapping[str, Mapping[str, Any]] | None = None) -> str:
        """Start a run; returns its id (:class:`~modelyard.errors.Conflict` while one of the
        same pipeline and tenant is under way)."""
        body: dict[str, Any] = {"tenant": tenant, "overrides": dict(overrides or {}) or None}
        run_id: str = self._call("POST", f"/pipelines/{name}/runs", json=body).json()["run_id"]
        return run_id

    def pipeline_triggers(self, name: str) -> dict[str, Any]:
        """Each trigger's state: last check and figures, last firing and run, next due time."""
        return dict(self._call("GET", f"/pipelines/{name}/triggers").json())

    def pipeline_run(self, run_id: str) -> dict[str, Any]:
        """A run with each step's state, job, cache hit, outputs and error."""
        return dict(self._call("GET", f"/pipelines/runs/{run_id}").json())

    def pipeline_runs(self, *, pipeline: str | None = None, state: str | None = None,
                      limit: int = 50) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("pipeline", pipeline), ("state", state)) if v is not None}
        runs: list[dict[str, Any]] = self._call(
            "GET", "/pipelines/runs", params={**params, "limit": limit}).json()["runs"]
        return runs

    def pipeline_logs(self, run_id: str, step: str | None = None) -> str:
        params = {"step": step} if step else {}
        return self._call("GET", f"/pipelines/runs/{run_id}/logs", params=params).text

    def cancel_pipeline_run(self, run_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/pipelines/runs/{run_id}/cancel").json())

    def rerun_pipeline(self, run_id: str, from_step: str | None = None) -> str:
        """A new run of the same pipeline; with ``from_step`` it reuses the upstream steps'
        outputs and runs that step and everything after it again."""
        params = {"from_step": from_step} if from_step else {}
        new: str = self._call("POST", f"/pipelines/runs/{run_id}/rerun",
                              params=params).json()["run_id"]
        return new

    def wait_pipeline_run(self, run_id: str, timeout: float | None = None, *,
                          on_change: Callable[[dict[str, Any]], None] | None = None,
                          poll: float = 0.5) -> dict[str, Any]:
        """Poll a run until it ends; ``on_change`` gets each answer that differs from the
        last. Raises TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            run = self.pipeline_run(run_id)
            shown = [(s["name"], s["state"]) for s in run["steps"]]
            if on_change is not None and (last is None or shown != last["shown"]):
                on_change(run)
            last = {"shown": shown}
            if run["state"] in RUN_ENDED:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"pipeline run {run_id} did not end within {timeout} s")
            time.sleep(poll)
