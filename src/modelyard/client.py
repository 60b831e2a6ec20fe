"""``modelyard.Client``: the HTTP API from Python (notebooks, scripts, the CLI).

Errors come back as the same classes the server raised (``NotFound``, ``RequestError``, ...), and
:meth:`Client.wait` follows a job with long-polls instead of busy polling.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx

from modelyard.client_experiments import ExperimentsMixin
from modelyard.client_pipelines import PipelinesMixin
from modelyard.errors import JobFailed, ModelyardError, RequestError, error_class

DEFAULT_URL = "http://127.0.0.1:8765"
TERMINAL = {"succeeded", "failed", "cancelled"}


class Client(PipelinesMixin, ExperimentsMixin):
    """A Modelyard server's API.

    Args:
        url: the server, default ``MODELYARD_URL`` or ``http://127.0.0.1:8765``.
        token: bearer token, default ``MODELYARD_TOKEN``.
        timeout: seconds for each HTTP call (long-polls add their wait to it).
    """

    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("MODELYARD_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("MODELYARD_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, wait: float = 0, **kwargs: Any) -> httpx.Response:
        timeout = self._timeout + wait
        try:
            response = self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.TransportError as exc:
            raise ModelyardError(
                f"cannot reach the Modelyard server at {self.url} ({exc}); start it with "
                "`modelyard server` or set MODELYARD_URL"
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            name = body.get("error", "") if isinstance(body, dict) else ""
            message = body.get("message") if isinstance(body, dict) else None
            raise error_class(name)(message or f"HTTP {response.status_code}: {response.text}")
        return response

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/healthz").json())

    def train(self, request: Mapping[str, Any] | str | Path | Any) -> str:
        """Submit a train request (a mapping, a ``TrainRequest``, or a YAML/JSON file path)."""
        if isinstance(request, str | Path):
            from modelyard.request.loading import load_request

            request = load_request(request)
        if hasattr(request, "model_dump"):
            payload = request.model_dump(mode="json")
        elif isinstance(request, Mapping):
            payload = dict(request)
        else:
            raise RequestError(f"a train request must be a mapping or a file, got {request!r}")
        job_id: str = self._call("POST", "/train", json=payload).json()["job_id"]
        return job_id

    def status(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        """The job's status; with ``wait``, answered as soon as it changes (or after ``wait`` s)."""
        params = {"wait": wait} if wait else {}
        status: dict[str, Any] = self._call(
            "GET", f"/jobs/{job_id}/status", params=params, wait=wait
        ).json()["status"]
        return status

    def result(self, job_id: str, wait: float = 0, *, until: str = "change") -> dict[str, Any]:
        """``{"status", "result", "exception_info"}``; ``result`` is None until the job succeeds.

        With ``wait``, answered at the job's next change (``until="done"``: when it ends).
        """
        params: dict[str, Any] = {"wait": wait, "until": until} if wait else {}
        return dict(self._call("GET", f"/jobs/{job_id}/result", params=params, wait=wait).json())

    def job(self, job_id: str) -> dict[str, Any]:
        """Everything about a job: status, result, exception_info and the request."""
        return dict(self._call("GET", f"/jobs/{job_id}").json())

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        *,
        raise_on_failure: bool = True,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Block until the job ends; return its result answer.

        Raises:
            JobFailed: the job ended failed or cancelled (unless ``raise_on_failure=False``).
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 10.0 if deadline is None else max(0.0, min(10.0, deadline - time.monotonic()))
            answer = self.result(job_id, wait=left, until="change" if on_update else "done")
            state = answer["status"]["transition"]["job_state"]
            if on_update is not None:
                on_update(answer["status"])
            if state in TERMINAL:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {state} after {timeout} s")
        if raise_on_failure and state != "succeeded":
            info = answer.get("exception_info") or {}
            reason = answer["status"]["transition"].get("reason") or info.get("message", "")
            raise JobFailed(f"job {job_id} {state}: {reason}", job_id=job_id, exception_info=info)
        return answer

    def jobs(self, **filters: Any) -> dict[str, Any]:
        """List jobs: ``state``, ``owner``, ``project``, ``model_name``, ``limit``, ``offset``."""
        params = {k: v for k, v in filters.items() if v is not None}
        return dict(self._call("GET", "/jobs", params=params).json())

    def fleet(self, job_id: str) -> dict[str, Any]:
        """A fleet's counts (queued, running, succeeded, failed, skipped) and its tenants."""
        return dict(self._call("GET", f"/jobs/{job_id}/fleet").json())

    def retry(self, job_id: str, tenants: list[str] | None = None) -> dict[str, Any]:
        """Retrain some tenants of a finished fleet (default: those that did not succeed)."""
        return dict(self._call("POST", f"/jobs/{job_id}/retry", json={"tenants": tenants}
                               ).json())

    def replay(self, job_id: str) -> str:
        """Run succeeded train job ``job_id``'s request again as a new job (its model is not
        registered); returns the new job's id, for :meth:`wait` and :meth:`replay_comparison`.
        """
        replay_id: str = self._call("POST", f"/jobs/{job_id}/replay").json()["job_id"]
        return replay_id

    def replay_comparison(self, job_id: str) -> dict[str, Any]:
        """Replay ``job_id`` against its original: ``verdict`` (pending, failed, reproduced,
        differs), ``same_model``, ``reasons`` (data_changed, packages_differ,
        workflow_code_differs, not_deterministic), the changed data files and packages."""
        return dict(self._call("GET", f"/jobs/{job_id}/replay").json())

    def logs(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        """The job's log from byte ``offset``; returns the text and the offset to continue from."""
        response = self._call("GET", f"/jobs/{job_id}/logs", params={"offset": offset})
        return response.text, int(response.headers.get("X-Log-Offset", offset))

    def cancel(self, job_id: str) -> dict[str, Any]:
        status: dict[str, Any] = self._call("POST", f"/jobs/{job_id}/cancel").json()["status"]
        return status

    # -- registry --------------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every registered model with its version count and production versions."""
        return list(self._call("GET", "/models").json()["models"])

    def versions(self, model_name: str, *, tenant: str | None = None,
                 stage: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"tenant": tenant, "stage": stage}.items() if v is not None}
        return list(self._call("GET", f"/models/{model_name}/versions", params=params
                               ).json()["versions"])

    def version(self, model_name: str, version: int, *, tenant: str = "*") -> dict[str, Any]:
        return dict(self._call("GET", f"/models/{model_name}/versions/{version}",
                               params={"tenant": tenant}).json())

    def set_stage(self, model_name: str, version: int, stage: str, *, actor: str | None = None,
                  reason: str = "", tenant: str = "*") -> dict[str, Any]:
        """Move a version; to production only if approved or the policy allows it.

        ``actor`` (and ``user``, elsewhere) name who acts on a server without tokens; a server
        with tokens records the token's identity instead.
        """
        body = _named({"stage": stage, "reason": reason, "tenant": tenant}, actor=actor)
        return dict(self._call("POST", f"/models/{model_name}/versions/{version}/stage",
                               json=body).json())

    def approve(self, model_name: str, version: int, *, comment: str, user: str | None = None,
                tenant: str = "*") -> dict[str, Any]:
        """Approve a version (as ``user`` on a server without tokens): it goes to production."""
        body = _named({"comment": comment, "tenant": tenant}, user=user)
        return dict(self._call("POST", f"/models/{model_name}/versions/{version}/approve",
                               json=body).json())

    def rollback(self, model_name: str, *, actor: str | None = None, reason: str = "",
                 tenant: str = "*") -> dict[str, Any]:
        body = _named({"reason": reason, "tenant": tenant}, actor=actor)
        return dict(self._call("POST", f"/models/{model_name}/rollback", json=body).json())

    def compare(self, model_name: str, a: int, b: int, *, tenant: str = "*") -> dict[str, Any]:
        return dict(self._call("GET", f"/models/{model_name}/compare",
                               params={"a": a, "b": b, "tenant": tenant}).json())

    def events(self, model_name: str, *, tenant: str | None = None) -> list[dict[str, Any]]:
        params = {"tenant": tenant} if tenant else {}
        return list(self._call("GET", f"/models/{model_name}/events", params=params
                               ).json()["events"])

    def policy(self, model_name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/models/{model_name}/policy").json())

    def set_policy(self, model_name: str, *, auto_promote: bool, actor: str | None = None,
                   metric: str = "roc_auc", min_improvement: float = 0.0,
                   higher_is_better: bool = True, require_same_holdout: bool = True,
                   four_eyes: bool = True, **guard_rails: Any) -> dict[str, Any]:
        """Replace the model's policy (``four_eyes=False`` lets an approver approve what
        they submitted, and the audit says so).

        Args:
            guard_rails: ``min_holdout_rows``, ``min_holdout_positives``, ``max_score_psi``,
                ``max_latency_ms_per_row``, and ``fleet_promotion`` (``"auto"`` or
                ``"shadow"``); those not given are off (``auto`` for fleets).
        """
        body = _named({"auto_promote": auto_promote, "metric": metric,
                       "min_improvement": min_improvement, "higher_is_better": higher_is_better,
                       "require_same_holdout": require_same_holdout, "four_eyes": four_eyes,
                       **guard_rails}, actor=actor)
        return dict(self._call("PUT", f"/models/{model_name}/policy", json=body).json())

    # -- identities --------------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """``{"name", "role", "authenticated"}`` of this client's token."""
        return dict(self._call("GET", "/whoami").json())

    def create_token(self, name: str, role: str) -> dict[str, Any]:
        """A new token (admins): the answer's ``token`` is its only copy."""
        return dict(self._call("POST", "/tokens", json={"name": name, "role": role}).json())

    def tokens(self, *, revoked: bool = False) -> list[dict[str, Any]]:
        """Live tokens (admins); ``revoked=True``: every token ever made. Never the tokens."""
        return list(self._call("GET", "/tokens", params={"revoked": revoked}
                               ).json()["tokens"])

    def revoke_token(self, name: str) -> dict[str, Any]:
        """Revoke ``name``'s live token (admins)."""
        return dict(self._call("DELETE", f"/tokens/{name}").json())

    # -- serving --------------------------------------------------------------------------------

    def predict(self, model_name: str, rows: list[dict[str, Any]],
                tenant: str | None = None, unit: str | None = None) -> dict[str, Any]:
        """Scores of ``rows`` from the tenant's production model (the global one by default),
        or from a running experiment's arm (the same one for the same ``unit``)."""
        body = {"tenant": tenant, "rows": rows, **({"unit": unit} if unit is not None else {})}
        return dict(self._call("POST", f"/predict/{model_name}", json=body).json())

    def add_labels(self, model_name: str, labels: list[dict[str, Any]] | None = None, *,
                   path: str | None = None, strict: bool = False) -> dict[str, Any]:
        """Labels that came later, by ``request_id`` (and ``row``) of a prediction: given as
        dicts, or as a parquet ``path`` under the server's data roots.

        Returns:
            ``{"labels", "matched", "unknown", "duplicates", "unknown_examples"}``: how many
            were stored, matched a logged prediction, matched none (stored all the same) and
            were labelled before, and the first few unknown ones.

        Raises:
            RequestError: ``strict`` and some labels match no logged prediction (the message
                names them); nothing was stored.
        """
        body: dict[str, Any] = {"model_name": model_name, "strict": strict}
        body.update({"path": path} if path is not None else {"labels": labels})
        # The server first waits for the shadow scorer to log the predictions so far.
        return dict(self._call("POST", "/labels", json=body, wait=60).json())

    def monitoring(self, model_name: str, tenant: str | None = None, window: str = "7d",
                   traffic: str | None = None) -> dict[str, Any]:
        """Drift, decay and staleness of the version serving ``tenant`` over ``window`` (7d,
        12h, ...), from the production log or a ``traffic`` parquet under the data roots."""
        params = {k: v for k, v in {"tenant": tenant, "window": window,
                                    "traffic": traffic}.items() if v is not None}
        return dict(self._call("GET", f"/models/{model_name}/monitoring", params=params).json())

    def shadow_report(self, model_name: str, *, threshold: float = 0.5,
                      tenant: str | None = None) -> dict[str, Any]:
        """Each shadow version against production on the same requests."""
        params: dict[str, Any] = {"threshold": threshold}
        if tenant:
            params["tenant"] = tenant
        return dict(self._call("GET", f"/models/{model_name}/shadow-report",
                               params=params).json())

    def export(self, model_name: str, version: int, dest: str | Path, *,
               tenant: str = "*", format: Literal["folder", "mlflow"] = "folder") -> Path:
        """Download a version under ``dest`` as a folder that loads without Modelyard running.

        Args:
            model_name: the registered model.
            version: its version number.
            dest: the parent folder; the export is ``dest/NAME-vVERSION``.
            tenant: the version's tenant, default the global model.
            format: ``"folder"`` (``predict.py`` and the model, needs only its
                ``requirements.txt``) or ``"mlflow"`` (an MLflow pyfunc model for
                ``mlflow.pyfunc.load_model``; needs ``pip install 'modelyard[mlflow]'`` here,
                not on the server: the folder is converted locally).

        Returns:
            The export folder.
        """
        import io
        import tarfile
        import tempfile

        if format not in ("folder", "mlflow"):
            raise RequestError(f"format must be 'folder' or 'mlflow', got {format!r} instead")
        if format == "mlflow":
            from modelyard.mlflow_export import import_mlflow, save_mlflow_model

            import_mlflow()  # fail before the download when mlflow is missing
        data = self._call("GET", f"/models/{model_name}/versions/{version}/export",
                          params={"tenant": tenant}).content
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            top = tar.getnames()[0].split("/")[0]
            if format == "folder":
                tar.extractall(dest, filter="data")
                return dest / top
            with tempfile.TemporaryDirectory() as tmp:
                tar.extractall(tmp, filter="data")
                return save_mlflow_model(Path(tmp) / top, dest / top)


def _named(body: dict[str, Any], **names: str | None) -> dict[str, Any]:
    """``body`` with the names that were given (a server with tokens ignores them)."""
    return {**body, **{k: v for k, v in names.items() if v is not None}}
