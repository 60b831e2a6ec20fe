"""Model registry: versions, stage events, approvals, policies.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False, index=True),
        sa.Column("model_id", sa.String(80), nullable=False, index=True),
        sa.Column("job_id", sa.String(32), nullable=True, index=True),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("model_meta", sa.JSON, nullable=False),
        sa.Column("holdout", sa.JSON, nullable=False),
        sa.Column("provenance_path", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ux_model_versions_number", "model_versions",
                    ["model_name", "tenant", "version"], unique=True)
    op.create_index("ux_model_versions_production", "model_versions", ["model_name", "tenant"],
                    unique=True, sqlite_where=sa.text("stage = 'production'"),
                    postgresql_where=sa.text("stage = 'production'"))
    op.create_table(
        "model_stage_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), index=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "model_approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), index=True),
        sa.Column("approver", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "model_policies",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("auto_promote", sa.Boolean, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("min_improvement", sa.Float, nullable=False),
        sa.Column("higher_is_better", sa.Boolean, nullable=False),
        sa.Column("require_same_holdout", sa.Boolean, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_policies")
    op.drop_table("model_approvals")
    op.drop_table("model_stage_events")
    op.drop_table("model_versions")
