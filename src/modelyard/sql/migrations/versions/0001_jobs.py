"""Jobs, their transitions and their steps.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("request_hash", sa.String(80), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("owner", sa.String(200), nullable=False, index=True),
        sa.Column("project", sa.String(200), nullable=False, index=True),
        sa.Column("trainer", sa.String(200), nullable=False),
        sa.Column("workflow_name", sa.String(300), nullable=False),
        sa.Column("compute_resource", sa.String(16), nullable=False),
        sa.Column("executor", sa.String(32), nullable=False),
        sa.Column("timeout_seconds", sa.Float, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False, index=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("current_step", sa.String(64), nullable=True),
        sa.Column("server_id", sa.String(300), nullable=True),
        sa.Column("worker_host", sa.String(300), nullable=True),
        sa.Column("worker_pid", sa.Integer, nullable=True),
        sa.Column("log_file", sa.Text, nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("model_id", sa.String(80), nullable=True, index=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("exception_info", sa.JSON, nullable=True),
    )
    op.create_table(
        "job_transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True
        ),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "job_steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("info", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("job_steps")
    op.drop_table("job_transitions")
    op.drop_table("jobs")
