"""Fleets: parent/child jobs per tenant, and where each tenant is served from.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="train"))
        batch.add_column(sa.Column("parent_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("tenant", sa.String(200), nullable=True))
        batch.add_column(sa.Column("rows", sa.Integer, nullable=True))
        batch.add_column(sa.Column("fleet", sa.JSON, nullable=True))
        batch.create_index("ix_jobs_parent_id", ["parent_id"])
    op.create_table(
        "fleet_tenants",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("segment", sa.String(200), nullable=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fleet_tenants")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_parent_id")
        for column in ("fleet", "rows", "tenant", "parent_id", "kind"):
            batch.drop_column(column)
