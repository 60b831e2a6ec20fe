"""Serving routes: predict, labels, the shadow report, serving stats.

The router carries no authentication of its own: the application that mounts it adds its
dependencies (:func:`modelyard.api.app.create_app` adds the bearer-token check it puts on every
route but ``/healthz`` and the docs), so serving depends on no layer above it.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from modelyard.jsonbody import json_body_openapi, read_json_body
from modelyard.request.limits import validate_name
from modelyard.serving.explain import MAX_TOP
from modelyard.serving.service import ServingService
from modelyard.serving.shadow_log import read_labels

router = APIRouter(tags=["serving"])

# Names follow the rule POST /train registers them by: anything else is a 422 naming the field.
ModelName = Annotated[str, AfterValidator(lambda v: validate_name("model name", v))]
TenantName = Annotated[str | None, AfterValidator(
    lambda v: v if v is None else validate_name("tenant name", v))]
_MODEL_NAME: TypeAdapter[str] = TypeAdapter(ModelName)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: TenantName = Field(None, description="customer id; falls back to the global model")
    rows: list[dict[str, Any]] = Field(min_length=1)
    explain: bool = Field(False, description="add each row's largest feature contributions "
                          "(explanation)")
    explain_top: int = Field(5, ge=1, le=MAX_TOP, description="with explain: the contributions "
                             "listed per row, the largest first")
    unit: str | None = Field(None, min_length=1, max_length=200, description="who the request "
                             "is for (a customer, a session): a running experiment serves the "
                             "same unit the same arm; random when none")


class Contribution(BaseModel):
    feature: str
    value: Any = Field(description="the row's value of the feature, as sent")
    contribution: float


class RowExplanation(BaseModel):
    base_value: float
    margin: float = Field(description="base_value plus every feature's contribution: the "
                          "model's output on the row, on the scale of ``output``")
    others: float = Field(description="the contributions of the features not listed")
    contributions: list[Contribution]


class Explanation(BaseModel):
    method: str = Field(description="lightgbm_pred_contrib, xgboost_pred_contribs, tree_shap "
                        "or kernel_shap")
    output: str = Field(description="what contributions add up to: log_odds, raw_score, "
                        "probability, prediction, or score (the version's own scores)")
    rows: list[RowExplanation]


class PredictResponse(BaseModel):
    request_id: str
    model_name: str
    tenant: str | None
    served_by_tenant: str
    version: int
    model_id: str
    scores: list[Any]
    degraded: bool = Field(False, description="true when production cannot be loaded and an "
                           "earlier version answers instead")
    wanted_version: int | None = Field(None, description="degraded: the production version "
                                       "that should have answered")
    degraded_reason: str | None = Field(None, description="degraded: why it could not")
    explanation: Explanation | None = Field(None, description="with explain: why each row "
                                            "scored what it did")
    experiment: str | None = Field(None, description="the running experiment that answered")
    arm: str | None = Field(None, description="its arm that answered")


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str
    row: int = Field(0, ge=0, le=2**31 - 1)  # the label log's int32 column
    label: float = Field(allow_inf_nan=False)


class LabelsIn(BaseModel):
    """Labels inline, or a parquet file (folder, glob) under the data roots with the columns
    ``request_id``, ``label`` and optionally ``row`` (default 0)."""

    model_config = ConfigDict(extra="forbid")
    model_name: ModelName
    labels: list[Label] | None = Field(None, min_length=1)
    path: str | None = Field(None, description="parquet labels under the server's data roots")
    strict: bool = Field(False, description="refuse the whole batch (422 naming the unknown "
                         "ones; nothing stored) if a label matches no logged prediction")

    @model_validator(mode="after")
    def _one_source(self) -> LabelsIn:
        if (self.labels is None) == (self.path is None):
            raise ValueError("give either labels (a list) or path (a parquet file), not both")
        return self


class LabelledPrediction(BaseModel):
    request_id: str = Field(description="cut to 64 characters")
    row: int


class LabelsAnswer(BaseModel):
    """What a batch of labels matched. The production log holds the ``--log-sample`` fraction
    of predictions (and the shadow log those a shadow version scored), so a label is unknown
    when its prediction was sampled out or dropped from a full log buffer."""

    labels: int = Field(description="labels stored: all of the batch, unknown ones too")
    matched: int = Field(description="labels whose (request_id, row) is a logged prediction")
    unknown: int = Field(description="labels whose (request_id, row) is not in the log")
    duplicates: int = Field(description="labels for a (request_id, row) labelled before or "
                            "earlier in the batch; reports use the latest")
    unknown_examples: list[LabelledPrediction] = Field(
        description="the first 10 unknown labels' request ids and rows")


async def serving(request: Request) -> ServingService:
    svc: ServingService = request.app.state.serving
    return svc


Serving = Annotated[ServingService, Depends(serving)]


async def predict_body(request: Request, svc: Serving) -> PredictRequest:
    """The body, parsed within ``--max-predict-values`` (a large one off the event loop)."""
    return await read_json_body(
        request, PredictRequest, svc.settings.max_predict_values, "a predict request",
        " (--max-predict-values, MODELYARD_MAX_PREDICT_VALUES): send fewer rows per request",
        direct=True)


def model_name_of(path_value: str) -> str:
    """The ``{model_name}`` of a predict path, checked as FastAPI checks the route's parameter
    (:mod:`modelyard.api.predict_path` dispatches the route without FastAPI's router).

    Raises:
        RequestValidationError: the name breaks the naming rule (a 422 naming the field).
    """
    try:
        return _MODEL_NAME.validate_python(path_value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("path", "model_name", *e["loc"])}
                                      for e in errors]) from None


@router.post("/predict/{model_name}", response_model=PredictResponse,
             openapi_extra=json_body_openapi(PredictRequest, "--max-predict-body-bytes"))
async def predict(model_name: ModelName, body: Annotated[PredictRequest, Depends(predict_body)],
                  svc: Serving, request: Request) -> JSONResponse:
    """Score rows with the tenant's production model (the global one for cold-start tenants);
    shadow versions score the same rows off the request path. With ``explain``, each row's
    largest feature contributions too (``explanation``)."""
    # modelyard.api.predict_path calls this function with what FastAPI would resolve, without
    # FastAPI's dispatch; the declaration here is what OpenAPI documents.
    # Built by us, so no response-model validation on the hot path (the schema is documented).
    # The raw body (already read, so no copy) is what shadows get: the scorer process parses
    # it again rather than this process pickling the rows for it.
    return JSONResponse(await svc.predict(
        model_name, body.tenant, body.rows, body_json=await request.body(), unit=body.unit,
        explain_top=body.explain_top if body.explain else None))


@router.post("/labels")
async def add_labels(body: LabelsIn, svc: Serving) -> LabelsAnswer:
    """Labels that arrived later, by the request id (and row) a prediction answered with:
    inline, or from a parquet file under the data roots. The answer says how many match a
    logged prediction; unknown ones are stored too, unless ``strict`` refuses the batch. A
    label of a request an experiment's arm answered is also that arm's outcome."""
    if body.labels is not None:
        rows = [x.model_dump() for x in body.labels]
    else:
        rows = await run_in_threadpool(read_labels, str(body.path), svc.settings.data_roots)
    await svc.drain()  # predictions so far are in the logs the labels match
    added = await run_in_threadpool(svc.shadow_log.add_labels, body.model_name, rows,
                                    strict=body.strict)
    await run_in_threadpool(svc.label_outcomes, rows)  # labels of experiments' requests
    return LabelsAnswer.model_validate(dataclasses.asdict(added))


@router.get("/models/{model_name}/shadow-report")
async def report(model_name: ModelName, svc: Serving,
                 threshold: Annotated[float, Query(gt=0, lt=1)] = 0.5,
                 tenant: TenantName = None) -> dict[str, Any]:
    """Shadow versus production on the same traffic: correlation, agreement, shift, AUCs."""
    return (await svc.shadow_report(model_name, threshold, tenant)).to_json()


@router.get("/serving/stats")
def stats(svc: Serving) -> dict[str, Any]:
    return svc.stats()
