"""The declarative base every table shares (one metadata, one Alembic history) and column types."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import DateTime, Table, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the job store; use UTC-aware datetimes")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    pass


def table_of(row: type[Base]) -> Table:
    """A mapped class's table, for Core statements: an INSERT of plain rows through the Core
    skips the ORM's per-object bookkeeping, and the job store and the registry run a few such
    INSERTs per batch of worker events."""
    return cast(Table, row.__table__)
