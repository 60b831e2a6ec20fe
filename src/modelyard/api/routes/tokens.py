"""Tokens over HTTP (admins only), and ``GET /whoami`` (any token).

``modelyard tokens`` does the same on the server's database directly, which is how the first
token of a server is made: ``POST /tokens`` needs an admin's token, so nobody who can merely
reach a server without tokens can lock it (a first token turns auth on). These routes let an
admin manage tokens from anywhere.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from modelyard.api.deps import Services, Who, db_session, require_token, services
from modelyard.api.schemas import error_responses
from modelyard.auth import tokens as store
from modelyard.auth.roles import Role
from modelyard.auth.tables import TokenRow
from modelyard.errors import Forbidden

router = APIRouter(prefix="/tokens", tags=["tokens"], dependencies=[Depends(require_token)])
whoami_router = APIRouter(tags=["tokens"], dependencies=[Depends(require_token)])

DB = Annotated[Session, Depends(db_session)]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="the identity audits record (letters, digits, '._@+-')")
    role: Role


class Token(BaseModel):
    name: str
    role: Role
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None
    revoked_by: str | None


class NewToken(Token):
    token: str = Field(description="the bearer token; shown this once, stored only hashed")


class TokenList(BaseModel):
    tokens: list[Token]


class WhoAmI(BaseModel):
    name: str = Field(description="the token's identity; '' when the server has no tokens")
    role: Role
    authenticated: bool


def token_of(row: TokenRow) -> Token:
    return Token(name=row.name, role=Role(row.role), created_at=row.created_at,
                 created_by=row.created_by, revoked_at=row.revoked_at, revoked_by=row.revoked_by)


@router.post("", status_code=201, responses=error_responses(400, 409, 422))
def create_token(session: DB, body: TokenIn, who: Who) -> NewToken:
    """A new token for ``name`` with ``role``; the answer is the only place the token appears."""
    if not who.authenticated:
        raise Forbidden("this server has no tokens yet: make the first one on its database, "
                        "with `modelyard tokens create NAME --role admin` and the server's "
                        "--home or --db; POST /tokens needs an admin's token")
    row, token = store.create_token(session, body.name, body.role, created_by=who.name)
    return NewToken(**token_of(row).model_dump(), token=token)


@router.get("")
def list_tokens(session: DB, revoked: bool = False) -> TokenList:
    """Live tokens (``revoked=true``: every token ever made); never the tokens themselves."""
    return TokenList(tokens=[token_of(r) for r in store.list_tokens(session, revoked=revoked)])


@router.delete("/{name}", responses=error_responses(404))
def revoke_token(session: DB, name: str, who: Who,
                 svc: Annotated[Services, Depends(services)]) -> Token:
    """Revoke ``name``'s live token: at once on this server, within seconds on the others."""
    row = store.revoke_token(session, name, revoked_by=who.name or "anonymous (no tokens)")
    svc.auth.forget()
    return token_of(row)


@whoami_router.get("/whoami")
def whoami(who: Who) -> WhoAmI:
    """The caller's identity and role, as the server sees its token."""
    return WhoAmI(name=who.name, role=who.role, authenticated=who.authenticated)
