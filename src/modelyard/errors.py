"""Modelyard's exception tree.

Every error Modelyard raises on purpose is a ``ModelyardError``. Client-facing classes carry the
HTTP status the API answers with; the Python client maps a status (and the ``error`` name in the
body) back to the same class, so ``except modelyard.errors.NotFound`` works on both sides.

::

    ModelyardError
    ├── ConfigurationError          bad settings, a missing optional extra         (500)
    ├── RequestError(ValueError)    a malformed train request                      (422)
    ├── NotFound(LookupError)       no such job / model / artefact                 (404)
    ├── Conflict                    the job is not in a state that allows this     (409)
    ├── Unauthorized                missing or wrong bearer token                  (401)
    ├── Forbidden(PermissionError)  the token's role is not enough, or four eyes   (403)
    ├── ModelUnavailable            the production model cannot be loaded, and no
    │                               earlier one is loaded to answer instead         (503)
    ├── DataError(ValueError)       a problem found in the data: missing file or column,
    │   │                           a filter that leaves no rows, an empty holdout  (job fails)
    │   └── DataAccessDenied(PermissionError)  a path outside the data roots
    ├── WorkflowError               unknown workflow, or a workflow that raised     (job fails)
    ├── ArtifactError               an artefact is missing or its hash does not match
    ├── WorkflowCheckFailed(AssertionError)  ``modelyard.testing.check_workflow``: the
    │                               workflow breaks the contract (raised in the user's tests)
    └── JobFailed                   raised by ``Client.wait`` when a job ends failed

Foreign exceptions (pyarrow, SQLAlchemy, fsspec) are translated where they are caught, so a user
never has to know which library a message came from.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ModelyardError(Exception):
    """Root of every error Modelyard raises on purpose."""

    status_code: ClassVar[int] = 500


class ConfigurationError(ModelyardError):
    """Settings that cannot work, or an optional extra that is not installed."""


class RequestError(ModelyardError, ValueError):
    """A train request that does not follow the contract."""

    status_code = 422


class NotFound(ModelyardError, LookupError):
    """The job, model or artefact named does not exist."""

    status_code = 404


class Conflict(ModelyardError):
    """The action is not allowed in the object's current state."""

    status_code = 409


class Unauthorized(ModelyardError):
    """The bearer token is missing or wrong."""

    status_code = 401


class Forbidden(ModelyardError, PermissionError):
    """The caller is known but may not do this: its role is not enough, or it submitted the job
    whose version it tries to approve (four eyes)."""

    status_code = 403


class ModelUnavailable(ModelyardError):
    """The production model cannot be loaded and no earlier one is loaded to fall back on."""

    status_code = 503


class DataError(ModelyardError, ValueError):
    """A problem found in the data the request points at."""

    status_code = 422


class DataAccessDenied(DataError, PermissionError):
    """The request names a path outside every configured data root."""

    status_code = 403


class WorkflowError(ModelyardError):
    """The workflow cannot be found, or it failed while training or predicting."""

    status_code = 422


class ArtifactError(ModelyardError):
    """An artefact is missing, or its bytes do not match its content address."""


class WorkflowCheckFailed(ModelyardError, AssertionError):
    """A workflow broke the contract; the message says which rule and how."""


class JobFailed(ModelyardError):
    """A job the caller waited for ended ``failed`` (or ``cancelled``)."""

    def __init__(self, message: str, *, job_id: str, exception_info: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.exception_info = exception_info


def error_class(name: str) -> type[ModelyardError]:
    """Map an error class name (as the API reports it) back to the class; unknown: the root."""
    found = _BY_NAME.get(name)
    return found if found is not None else ModelyardError


_BY_NAME: dict[str, type[ModelyardError]] = {
    cls.__name__: cls
    for cls in (
        ModelyardError,
        ConfigurationError,
        RequestError,
        NotFound,
        Conflict,
        Unauthorized,
        Forbidden,
        ModelUnavailable,
        DataError,
        DataAccessDenied,
        WorkflowError,
        ArtifactError,
        WorkflowCheckFailed,
    )
}
