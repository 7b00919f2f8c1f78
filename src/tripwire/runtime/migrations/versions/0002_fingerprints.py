"""Monitor endpoint fingerprints (canary answers) for integrity checks.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_fingerprints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("monitor", sa.String(100), nullable=False),
        sa.Column("reference", sa.Boolean, nullable=False),
        sa.Column("answers", sa.JSON, nullable=False),
        sa.Column("p_value", sa.Float, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_fingerprints_monitor", "monitor_fingerprints", ["tenant_id", "monitor", "id"]
    )


def downgrade() -> None:
    op.drop_table("monitor_fingerprints")
