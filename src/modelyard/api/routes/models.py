"""The model registry over HTTP: models, versions, stages, approvals, rollback, compare, policy."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from modelyard.api.deps import Who, db_session, require_token
from modelyard.api.params import (
    INT32_MAX,
    ModelName,
    OptionalTenant,
    Tenant,
    VersionNumber,
)
from modelyard.api.registry_actions import (
    approve_as,
    rollback_as,
    set_policy_as,
    set_stage_as,
)
from modelyard.api.registry_schemas import (
    Approval,
    EventList,
    ModelList,
    ModelSummary,
    Policy,
    PolicyIn,
    Rollback,
    StageChange,
    Version,
    VersionList,
    event_of,
    policy_of,
    version_of,
)
from modelyard.api.schemas import error_responses
from modelyard.artifacts import ArtifactStore
from modelyard.registry import store
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.serving.export import export_tarball


def _refresh_serving(request: Request) -> Iterator[None]:
    """After a registry change through this server, serve the new stages at once: before the
    answer goes out (``scope="function"``), so a predict call the client makes next already
    sees them. Refreshed after the answer (where a dependency's exit runs by default), the
    next call could race the refresh, and a shadow set just before a request would miss it."""
    yield
    serving = getattr(request.app.state, "serving", None)
    if serving is not None and request.method != "GET":
        serving.router.refresh()


router = APIRouter(prefix="/models", tags=["registry"],
                   dependencies=[Depends(require_token),
                                 Depends(_refresh_serving, scope="function")],
                   responses=error_responses(404, 422))

DB = Annotated[Session, Depends(db_session)]


@router.get("")
def list_models(session: DB) -> ModelList:
    return ModelList(models=[ModelSummary.model_validate(m, from_attributes=True)
                             for m in store.list_models(session)])


@router.get("/{model_name}/versions")
def list_versions(session: DB, model_name: ModelName, tenant: OptionalTenant = None,
                  stage: Stage | None = None) -> VersionList:
    rows = store.list_versions(session, model_name, tenant=tenant, stage=stage)
    return VersionList(versions=[version_of(r) for r in rows])


@router.get("/{model_name}/versions/{version}")
def read_version(session: DB, model_name: ModelName, version: VersionNumber,
                 tenant: Tenant = GLOBAL_TENANT) -> Version:
    return version_of(store.read_version(session, model_name, version, tenant))


@router.post("/{model_name}/versions/{version}/stage", responses=error_responses(400, 409))
def set_stage(session: DB, model_name: ModelName, version: VersionNumber, change: StageChange,
              who: Who) -> Version:
    """Move a version (to production only through the approval gate)."""
    return version_of(set_stage_as(session, who, model_name, version, change.stage,
                                   tenant=change.tenant, reason=change.reason,
                                   claimed=change.actor))


@router.post("/{model_name}/versions/{version}/approve", responses=error_responses(400, 409))
def approve(session: DB, model_name: ModelName, version: VersionNumber, approval: Approval,
            who: Who) -> Version:
    """A named user approves the version: it goes to production, replacing the current one.

    With tokens, the approver is the token's identity, and it may not be who submitted the job
    that trained the version (four eyes) unless the model's policy waives it.
    """
    return version_of(approve_as(session, who, model_name, version, tenant=approval.tenant,
                                 comment=approval.comment, claimed=approval.user))


@router.post("/{model_name}/rollback", responses=error_responses(400, 409))
def rollback(session: DB, model_name: ModelName, body: Rollback, who: Who) -> Version:
    """Return the previous production version to production."""
    return version_of(rollback_as(session, who, model_name, tenant=body.tenant,
                                  reason=body.reason, claimed=body.actor))


@router.get("/{model_name}/compare")
def compare(session: DB, model_name: ModelName,
            a: Annotated[int, Query(ge=1, le=INT32_MAX, description="a version's number")],
            b: Annotated[int, Query(ge=1, le=INT32_MAX, description="a version's number")],
            tenant: Tenant = GLOBAL_TENANT) -> dict[str, Any]:
    """Two versions' holdout metrics side by side, with ``b - a``; where one was trained
    while the other was production, both on the same rows (``same_rows``); and each feature's
    global importance in both (``importance``, most important first)."""
    return store.compare_versions(session, model_name, a, b, tenant)


@router.get("/{model_name}/events")
def events(session: DB, model_name: ModelName, tenant: OptionalTenant = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> EventList:
    """The audit trail: every stage change with who, when and why (newest first)."""
    return EventList(events=[event_of(e) for e in store.events_of(session, model_name, tenant,
                                                                   limit)])


@router.get("/{model_name}/policy")
def read_policy(session: DB, model_name: ModelName) -> Policy:
    return policy_of(store.read_policy(session, model_name))


@router.put("/{model_name}/policy", responses=error_responses(400))
def set_policy(session: DB, model_name: ModelName, body: PolicyIn, who: Who) -> Policy:
    return policy_of(set_policy_as(session, who, model_name, body))


@router.get("/{model_name}/versions/{version}/export", response_class=Response, responses={
    200: {"content": {"application/gzip": {}}, "description": "The export, as tar.gz"}})
def export(request: Request, session: DB, model_name: ModelName, version: VersionNumber,
           tenant: Tenant = GLOBAL_TENANT) -> Response:
    """A self-contained folder (tar.gz) that loads and predicts without Modelyard running."""
    row = store.read_version(session, model_name, version, tenant)
    artifacts = ArtifactStore(request.app.state.services.settings.artifact_root)
    data = export_tarball(artifacts, row)
    return Response(data, media_type="application/gzip", headers={
        "Content-Disposition": attachment(f"{model_name}-v{version}.tar.gz")})


# What may stand between the quotes of filename="...": printable ASCII but the quote, the
# backslash, and what a lenient parser could take for the end of the value or a path.
_UNSAFE_IN_FALLBACK = re.compile(r'[^\x21-\x7e]|["\\;,%/]')


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` that saves the answer as ``filename`` (RFC 6266): the name
    percent-encoded as UTF-8 in ``filename*``, and for clients that only read ``filename``, an
    ASCII one with each unsafe character (quotes, separators, controls, non-ASCII) as ``_``."""
    fallback = _UNSAFE_IN_FALLBACK.sub("_", filename)
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"

