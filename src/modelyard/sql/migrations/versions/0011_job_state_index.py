"""The jobs list filtered by state: a page of one state's jobs newest first, read in index order.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_state_parent_created", "jobs", ["state", "parent_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_state_parent_created", table_name="jobs")
