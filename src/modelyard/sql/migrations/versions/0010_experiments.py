"""Online experiments: their definitions (one running per model and tenant), per-arm counts,
assignments and outcomes.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_RUNNING = sa.text("state = 'running'")


def _experiment() -> sa.ForeignKey:
    return sa.ForeignKey("experiments.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("weights", sa.JSON, nullable=False),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("stage_started_at", UTCDateTime, nullable=False),
        sa.Column("stage_start_requests", sa.Integer, nullable=False),
        sa.Column("duplicate_outcomes", sa.Integer, nullable=False),
        sa.Column("unknown_outcomes", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("winner", sa.String(200), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime, nullable=True),
    )
    op.create_index("ux_experiments_running", "experiments", ["model_name", "tenant"],
                    unique=True, sqlite_where=_RUNNING, postgresql_where=_RUNNING)
    op.create_table(
        "experiment_arm_stats",
        sa.Column("experiment_id", sa.String(32), _experiment(), primary_key=True),
        sa.Column("arm", sa.String(200), primary_key=True),
        sa.Column("server", sa.String(32), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.JSON, nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "experiment_assignments",
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("experiment_id", sa.String(32), _experiment(), nullable=False, index=True),
        sa.Column("arm", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(200), nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_experiment_assignments_unit", "experiment_assignments",
                    ["experiment_id", "unit"])
    op.create_table(
        "experiment_outcomes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(32), _experiment(), nullable=False, index=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("arm", sa.String(200), nullable=False),
        sa.Column("reward", sa.Float, nullable=False),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ux_experiment_outcomes_key", "experiment_outcomes",
                    ["experiment_id", "key"], unique=True)


def downgrade() -> None:
    op.drop_table("experiment_outcomes")
    op.drop_table("experiment_assignments")
    op.drop_table("experiment_arm_stats")
    op.drop_table("experiments")
