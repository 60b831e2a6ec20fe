"""Replays: the job a replay reruns.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs from before replays existed are no replays (NULL).
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("replay_of", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("replay_of")
