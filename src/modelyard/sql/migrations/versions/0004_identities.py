"""Identities: API tokens (hashed), who submitted each job, and the four-eyes policy field.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from modelyard.sql.base import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LIVE = "revoked_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
    )
    op.create_index("ux_api_tokens_live_name", "api_tokens", ["name"], unique=True,
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))
    # Jobs submitted before identities existed have no submitter (NULL).
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("submitted_by", sa.String(200), nullable=True))
    with op.batch_alter_table("model_policies") as batch:
        batch.add_column(sa.Column("four_eyes", sa.Boolean, nullable=False,
                                   server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("model_policies") as batch:
        batch.drop_column("four_eyes")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("submitted_by")
    op.drop_index("ux_api_tokens_live_name", "api_tokens")
    op.drop_table("api_tokens")
