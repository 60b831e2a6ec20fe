"""API tokens: create (the token is shown once), list, revoke, and who a token is.

A token is ``myd_`` and 43 characters of :func:`secrets.token_urlsafe` (256 random bits); the
database keeps its sha256 only. A hash is enough (no salt, no slow KDF): a slow hash protects
passwords, which people choose, while a token's 256 random bits cannot be guessed from its
hash. Lookups go by the hash, and the stored hash is compared in constant time.

Every function commits what it changes. The names ``token`` (the ``MODELYARD_TOKEN``
identity) and ``modelyard`` (the actor of what no person asked for) are reserved.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.auth.roles import SHARED_TOKEN_NAME, Identity, Role
from modelyard.auth.tables import TokenRow
from modelyard.errors import Conflict, NotFound, RequestError

PREFIX = "myd_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
RESERVED = frozenset({SHARED_TOKEN_NAME, "modelyard"})


def hash_token(token: str) -> str:
    """The sha256 (hex) of a token, as stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create_token(session: Session, name: str, role: Role, *, created_by: str
                 ) -> tuple[TokenRow, str]:
    """Store a new token for identity ``name``; returns its row and the token (shown once).

    Raises:
        RequestError: ``name`` is not a valid identity name, or is reserved.
        Conflict: ``name`` already has a live token.
    """
    check_name(name)
    token = PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(name=name, role=Role(role).value, token_hash=hash_token(token),
                   created_at=_now(), created_by=created_by)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"{name!r} already has a live token; revoke it first "
                       f"(`modelyard tokens revoke {name}`), or choose another name") from None
    return row, token


def check_name(name: str) -> None:
    """Raises RequestError unless ``name`` can name an identity."""
    if not NAME.fullmatch(name):
        raise RequestError(
            f"token name {name!r} must be 1-100 letters, digits and '._@+-', starting with a "
            "letter or digit (it is the name audits record)")
    if name in RESERVED:
        raise RequestError(f"token name {name!r} is reserved; choose another one")


def list_tokens(session: Session, *, revoked: bool = False) -> list[TokenRow]:
    """Live tokens by name (``revoked``: every token ever created, oldest first)."""
    query = select(TokenRow)
    if not revoked:
        return list(session.scalars(query.where(TokenRow.revoked_at.is_(None))
                                    .order_by(TokenRow.name)))
    return list(session.scalars(query.order_by(TokenRow.id)))


def revoke_token(session: Session, name: str, *, revoked_by: str) -> TokenRow:
    """Revoke the live token of ``name`` (its row stays, for the audit).

    Raises:
        NotFound: ``name`` has no live token.
    """
    row = session.scalar(select(TokenRow).where(TokenRow.name == name,
                                                TokenRow.revoked_at.is_(None)))
    if row is None:
        raise NotFound(f"no live token named {name!r}; list them with `modelyard tokens list`")
    row.revoked_at = _now()
    row.revoked_by = revoked_by
    session.commit()
    return row


def identity_of(session: Session, token: str) -> Identity | None:
    """Who ``token`` is, or None if it is unknown or revoked."""
    digest = hash_token(token)
    row = session.scalar(select(TokenRow).where(TokenRow.token_hash == digest,
                                                TokenRow.revoked_at.is_(None)))
    if row is None or not secrets.compare_digest(row.token_hash, digest):
        return None
    return Identity(row.name, Role(row.role))


def tokens_exist(session: Session) -> bool:
    """Whether any token was ever created (revoked ones count: revoking every token must not
    open the server to everyone)."""
    return session.scalar(select(TokenRow.id).limit(1)) is not None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
