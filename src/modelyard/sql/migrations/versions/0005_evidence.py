"""Champion/challenger evidence on each version, and the policy's guard rails and fleet mode.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions registered before evidence existed have none (NULL): rules treat them as
    # compared with nothing.
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("evidence", sa.JSON, nullable=True))
    with op.batch_alter_table("model_policies") as batch:
        batch.add_column(sa.Column("min_holdout_rows", sa.Integer, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("min_holdout_positives", sa.Integer, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("max_score_psi", sa.Float, nullable=True))
        batch.add_column(sa.Column("max_latency_ms_per_row", sa.Float, nullable=True))
        batch.add_column(sa.Column("fleet_promotion", sa.String(16), nullable=False,
                                   server_default="auto"))


def downgrade() -> None:
    with op.batch_alter_table("model_policies") as batch:
        for column in ("fleet_promotion", "max_latency_ms_per_row", "max_score_psi",
                       "min_holdout_positives", "min_holdout_rows"):
            batch.drop_column(column)
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("evidence")
