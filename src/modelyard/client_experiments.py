"""The experiment methods of :class:`modelyard.client.Client` (``/experiments``, ``/outcomes``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx


def _named(body: dict[str, Any], **names: str | None) -> dict[str, Any]:
    return {**body, **{k: v for k, v in names.items() if v is not None}}


class ExperimentsMixin:
    """Create, list, read (the scorecard), stop and ship experiments; post outcomes."""

    _call: Callable[..., httpx.Response]

    def create_experiment(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Start an experiment (the body of ``POST /experiments``); returns it with its
        scorecard. :class:`~modelyard.errors.Conflict` while one runs for the model and
        tenant."""
        return dict(self._call("POST", "/experiments", json=dict(spec)).json())

    def experiments(self, model_name: str | None = None, state: str | None = None
                    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("model", model_name), ("state", state)) if v is not None}
        found: list[dict[str, Any]] = self._call("GET", "/experiments",
                                                 params=params).json()["experiments"]
        return found

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """The experiment with its scorecard (arms, guardrails, recommendation)."""
        return dict(self._call("GET", f"/experiments/{experiment_id}").json())

    def stop_experiment(self, experiment_id: str, *, reason: str = "",
                        actor: str | None = None) -> dict[str, Any]:
        body = _named({"reason": reason}, actor=actor)
        return dict(self._call("POST", f"/experiments/{experiment_id}/stop", json=body).json())

    def ship_experiment(self, experiment_id: str, *, arm: str | None = None,
                        comment: str = "", user: str | None = None) -> dict[str, Any]:
        """Ship the winner (``arm``, default the recommended one) through the approval gate."""
        body = _named({"comment": comment}, arm=arm, user=user)
        return dict(self._call("POST", f"/experiments/{experiment_id}/ship", json=body).json())

    def add_outcomes(self, outcomes: Sequence[Mapping[str, Any]],
                     experiment_id: str | None = None) -> dict[str, Any]:
        """Rewards by ``request_id`` (or ``unit`` with ``experiment_id``): ``{"request_id":
        ..., "reward": 1}``; the answer counts matched, late, duplicate and unknown ones."""
        body = _named({"outcomes": [dict(o) for o in outcomes]}, experiment_id=experiment_id)
        return dict(self._call("POST", "/outcomes", json=body).json())
