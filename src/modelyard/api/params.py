"""Path, query and body values the routes share, checked where FastAPI parses them.

A model or tenant name follows :func:`modelyard.request.validate_name`, the rule that
``POST /train`` applies to the names it registers, so a name no model can have is a 422 naming
the parameter rather than a 404 (or a 500 from a database that cannot store it). Integers are
bounded by what the columns they are compared with hold: an out-of-range number is a 422 too,
never an overflow in the database driver.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

from modelyard.request.limits import MAX_NAME_CHARS, validate_name

INT32_MAX = 2**31 - 1
"""Version numbers: an INTEGER column (32 bits in PostgreSQL)."""
INT64_MAX = 2**63 - 1
"""Offsets: SQL OFFSET and file positions are 64-bit."""


def _model_name(value: str) -> str:
    return validate_name("model name", value)


def _tenant_name(value: str) -> str:
    return validate_name("tenant name", value)


def _tenant_or_none(value: str | None) -> str | None:
    return None if value is None else _tenant_name(value)


def _model_name_or_none(value: str | None) -> str | None:
    return None if value is None else _model_name(value)


TenantValue = Annotated[str, AfterValidator(_tenant_name)]
"""A tenant name in a request body."""

ModelName = Annotated[str, AfterValidator(_model_name), Path(
    max_length=MAX_NAME_CHARS, description="the model's name (metadata.model_name)")]
Tenant = Annotated[str, AfterValidator(_tenant_name), Query(
    max_length=MAX_NAME_CHARS, description="tenant (customer); '*' is the global model")]
OptionalTenant = Annotated[str | None, AfterValidator(_tenant_or_none), Query(
    max_length=MAX_NAME_CHARS, description="only this tenant's ('*': the global model)")]
OptionalModelName = Annotated[str | None, AfterValidator(_model_name_or_none), Query(
    max_length=MAX_NAME_CHARS, description="only this model's")]
VersionNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="the version's number")]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="rows to skip")]
