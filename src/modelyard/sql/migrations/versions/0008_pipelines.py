"""Pipelines: their specs, their runs (one active per pipeline and tenant), each run's steps.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("state IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=True),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pipeline_name", sa.String(200), nullable=False, index=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("reason", sa.JSON, nullable=False),
        sa.Column("started_by", sa.String(200), nullable=True),
        sa.Column("overrides", sa.JSON, nullable=True),
        sa.Column("rerun_of", sa.String(32), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False, index=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
    )
    op.create_index("ux_pipeline_runs_active", "pipeline_runs", ["pipeline_name", "tenant"],
                    unique=True, sqlite_where=_ACTIVE, postgresql_where=_ACTIVE)
    op.create_table(
        "pipeline_run_steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32),
                  sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=True, index=True),
        sa.Column("cache_hit", sa.Boolean, nullable=False),
        sa.Column("reused_from", sa.String(32), nullable=True),
        sa.Column("no_cache", sa.Boolean, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
    )
    op.create_index("ux_pipeline_run_steps_name", "pipeline_run_steps", ["run_id", "name"],
                    unique=True)


def downgrade() -> None:
    op.drop_table("pipeline_run_steps")
    op.drop_table("pipeline_runs")
    op.drop_table("pipelines")
