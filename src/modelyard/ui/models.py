"""``/ui/models`` and ``/ui/models/{name}``: every model, and one model's versions per tenant
with their stage, metrics, age and approvals, the audit log and the policy; its buttons (stage,
approve, roll back) call :mod:`modelyard.api.registry_actions`, as the JSON routes do, so the
gate, the guard rails, four eyes and the audit apply to a click as to a ``POST``.

An action answers the refreshed registry section (``_registry.html``), which htmx swaps in; a
refusal is the error the API would give, which the page shows in its flash banner.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from modelyard.api.auth import IDENTITY
from modelyard.api.deps import Services, Who, services
from modelyard.api.params import ModelName, OptionalTenant, VersionNumber
from modelyard.api.registry_actions import approve_as, rollback_as, set_policy_as, set_stage_as
from modelyard.api.registry_schemas import PolicyIn
from modelyard.auth.roles import ANONYMOUS, Identity, Role
from modelyard.errors import NotFound, RequestError
from modelyard.registry import store
from modelyard.registry.stages import GLOBAL_TENANT, Stage
from modelyard.request.limits import MAX_TEXT_CHARS, validate_name
from modelyard.ui.forms import field, read_form
from modelyard.ui.registry_view import registry_view
from modelyard.ui.render import render

router = APIRouter(include_in_schema=False)


@router.get("/ui/models")
def models_page(request: Request, svc: Annotated[Services, Depends(services)]) -> HTMLResponse:
    with svc.sessions() as session:
        models = store.list_models(session)
    return render(request, "models.html", models=models, global_tenant=GLOBAL_TENANT)


@router.get("/ui/models/{model_name}")
def model_page(request: Request, model_name: ModelName,
               svc: Annotated[Services, Depends(services)],
               tenant: OptionalTenant = None) -> HTMLResponse:
    with svc.sessions() as session:
        view = registry_view(session, model_name, tenant)
        policy = store.read_policy(session, model_name)
    if not view.tenants and tenant is None:
        raise NotFound(f"model {model_name!r} has no versions; train one (POST /train with "
                       f"metadata.model_name {model_name!r}) or pick a model at /ui/models")
    return render(request, "model.html", view=view, policy=policy, tenant=tenant,
                  can_change=_can_change(request))


@router.post("/ui/models/{model_name}/versions/{version}/stage")
async def stage_action(request: Request, model_name: ModelName, version: VersionNumber,
                       svc: Annotated[Services, Depends(services)], who: Who) -> HTMLResponse:
    form = await read_form(request)
    stage = _stage(form.get("stage", ""))
    tenant = _tenant(form)
    with svc.sessions() as session:
        set_stage_as(session, who, model_name, version, stage, tenant=tenant,
                     reason=_text(form, "reason"), claimed=form.get("actor") or None)
    return _refreshed(request, svc, model_name, form)


@router.post("/ui/models/{model_name}/versions/{version}/approve")
async def approve_action(request: Request, model_name: ModelName, version: VersionNumber,
                         svc: Annotated[Services, Depends(services)], who: Who) -> HTMLResponse:
    form = await read_form(request)
    comment = field(form, "comment", max_chars=MAX_TEXT_CHARS)
    tenant = _tenant(form)
    with svc.sessions() as session:
        approve_as(session, who, model_name, version, tenant=tenant, comment=comment,
                   claimed=form.get("actor") or None)
    return _refreshed(request, svc, model_name, form)


@router.post("/ui/models/{model_name}/rollback")
async def rollback_action(request: Request, model_name: ModelName,
                          svc: Annotated[Services, Depends(services)], who: Who) -> HTMLResponse:
    form = await read_form(request)
    tenant = _tenant(form)
    with svc.sessions() as session:
        rollback_as(session, who, model_name, tenant=tenant, reason=_text(form, "reason"),
                    claimed=form.get("actor") or None)
    return _refreshed(request, svc, model_name, form)


@router.post("/ui/models/{model_name}/policy")
async def policy_action(request: Request, model_name: ModelName,
                        svc: Annotated[Services, Depends(services)], who: Who) -> HTMLResponse:
    policy = policy_of_form(await read_form(request))
    with svc.sessions() as session:
        row = set_policy_as(session, who, model_name, policy)
    return render(request, "_policy.html", policy=row, can_change=_can_change(request))


def policy_of_form(form: dict[str, str]) -> PolicyIn:
    """The policy form as ``PUT /models/{name}/policy``'s body: an unticked box is false, an
    empty guard rail is off.

    Raises:
        RequestError: a field is not what the policy takes (named, with why).
    """
    values: dict[str, object] = {name: name in form for name in _BOXES}
    for name in _FIELDS:
        value = form.get(name, "").strip()
        if value or name not in _OPTIONAL:
            values[name] = value
    if form.get("actor"):
        values["actor"] = form["actor"]
    try:
        return PolicyIn.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = ".".join(str(p) for p in first["loc"])
        raise RequestError(f"{field_name}: {first['msg']}; got {values.get(field_name)!r}"
                           ) from None


_BOXES = ("auto_promote", "higher_is_better", "require_same_holdout", "four_eyes")
_FIELDS = ("metric", "min_improvement", "min_holdout_rows", "min_holdout_positives",
           "max_score_psi", "max_latency_ms_per_row", "fleet_promotion")
_OPTIONAL = ("max_score_psi", "max_latency_ms_per_row")


def _refreshed(request: Request, svc: Services, model_name: str, form: dict[str, str]
               ) -> HTMLResponse:
    """The registry section after a change, as the page shows it (the tenant filter kept)."""
    shown = form.get("shown_tenant") or None
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:
        serving.router.refresh()  # as the JSON routes do: the next predict sees the change
    with svc.sessions() as session:
        view = registry_view(session, model_name, _valid_tenant(shown) if shown else None)
    return render(request, "_registry.html", view=view, tenant=shown,
                  can_change=_can_change(request))


def _can_change(request: Request) -> bool:
    """Whether the caller may press the buttons (an approver, as the JSON routes require);
    the middleware refuses anyone else's click whether or not the page shows them."""
    who: Identity = request.scope.get(IDENTITY, ANONYMOUS)
    return who.role.allows(Role.approver)


def _stage(value: str) -> Stage:
    try:
        return Stage(value)
    except ValueError:
        raise RequestError(f"stage: {value!r} is not a stage; pick one of "
                           f"{', '.join(s.value for s in Stage)}") from None


def _tenant(form: dict[str, str]) -> str:
    return _valid_tenant(form.get("tenant") or GLOBAL_TENANT)


def _valid_tenant(value: str) -> str:
    try:
        return validate_name("tenant name", value)
    except ValueError as exc:
        raise RequestError(f"tenant: {exc}") from None


def _text(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if len(value) > MAX_TEXT_CHARS:
        raise RequestError(f"{name}: at most {MAX_TEXT_CHARS:,} characters; got {len(value):,}")
    return value

