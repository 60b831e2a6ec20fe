"""Trigger states: what the scheduler remembers across restarts.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trigger_states",
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("trigger", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("next_due_at", UTCDateTime, nullable=True),
        sa.Column("last_checked_at", UTCDateTime, nullable=True),
        sa.Column("last_fired_at", UTCDateTime, nullable=True),
        sa.Column("last_run_id", sa.String(32), nullable=True),
        sa.Column("fired", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_check", sa.JSON, nullable=True),
        sa.Column("last_skip", sa.Text, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("trigger_states")
