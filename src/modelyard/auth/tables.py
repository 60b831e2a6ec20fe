"""Token rows: a name (the identity recorded in audits), a role and the sha256 of the token.

The token itself is never stored: it is printed once when created. Revoked tokens stay, with
when and by whom, so an audit's name can always be traced to the token that acted.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import Index

from modelyard.sql.base import Base, UTCDateTime


class TokenRow(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        # One live token per name: a name is one identity (rotate by revoking, then creating).
        Index("ux_api_tokens_live_name", "name", unique=True,
              sqlite_where=text("revoked_at IS NULL"),
              postgresql_where=text("revoked_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
