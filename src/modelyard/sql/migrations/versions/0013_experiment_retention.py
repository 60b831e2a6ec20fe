"""Experiment retention: a finished experiment's final scorecard, kept when its assignments and
outcomes are pruned.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("experiments", sa.Column("final_card", sa.JSON, nullable=True))
    op.add_column("experiments", sa.Column("pruned_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("pruned_at")
        batch.drop_column("final_card")
