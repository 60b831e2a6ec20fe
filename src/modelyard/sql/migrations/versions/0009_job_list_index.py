"""The jobs list's index: a page of jobs (top level, or a fleet's children) newest first.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_parent_created", "jobs", ["parent_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_parent_created", table_name="jobs")
