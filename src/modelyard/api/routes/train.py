"""POST /train: validate a request, store the job, answer with its id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from modelyard.api.deps import Services, Who, db_session, require_token, services
from modelyard.api.limits import read_train_request
from modelyard.api.schemas import TrainResponse
from modelyard.errors import RequestError, WorkflowError
from modelyard.jobs import fleet, store
from modelyard.jsonbody import json_body_openapi
from modelyard.request.models import TrainRequest
from modelyard.runtime.workflow import allowed_module

router = APIRouter(tags=["train"], dependencies=[Depends(require_token)])


@router.post("/train", openapi_extra=json_body_openapi(TrainRequest, "--max-body-bytes"))
def train(
    # Parsed by a dependency, off the event loop and within a budget (api/limits.py).
    request: Annotated[TrainRequest, Depends(read_train_request)],
    svc: Annotated[Services, Depends(services)],
    session: Annotated[Session, Depends(db_session)],
    who: Who,
) -> TrainResponse:
    """Queue a training job; poll ``/job/{id}/status`` or long-poll with ``?wait=SECONDS``."""
    name = request.train.workflow_name
    if ":" in name:  # refused at the door, before a worker would refuse it
        try:
            allowed_module(name, svc.settings.workflow_modules, svc.settings.workflow_packages)
        except WorkflowError as exc:
            raise RequestError(f"train.workflow_name: {exc}") from None
    job = store.create_job(session, request, executor=svc.settings.executor,
                           logs_dir=svc.settings.logs_dir, commit=False,
                           submitted_by=who.name or None)
    if job.kind == "fleet":
        fleet.queue_global(session, job)
    session.commit()
    svc.wake_dispatcher()
    return TrainResponse(job_id=job.id)
