"""The servers that share the job store, each with a lease it renews.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.String(300), primary_key=True),
        sa.Column("host", sa.String(300), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("renewed_at", UTCDateTime, nullable=False),
        sa.Column("lease_expires_at", UTCDateTime, nullable=False, index=True),
        sa.Column("stopped_at", UTCDateTime, nullable=True),
        sa.Column("taken_over_by", sa.String(300), nullable=True),
        sa.Column("taken_over_at", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("servers")
