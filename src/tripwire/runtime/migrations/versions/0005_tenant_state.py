"""Each tenant's writer state in one row: the audit budget's counters and cut-off, the honeypot
schedule, the newest event id and a version bumped by every commit, so several ``tripwire serve``
replicas (and a restarted one) continue from what was committed, under the row's lock.

Revision ID: 0005_tenant_state
Revises: 0004_idempotency
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_tenant_state"
down_revision = "0004_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_state",
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
        sa.Column("budget_seen", sa.BigInteger, nullable=False),
        sa.Column("budget_spent", sa.BigInteger, nullable=False),
        sa.Column("budget_cut", sa.Float, nullable=False),
        sa.Column("honeypot_credit", sa.Float, nullable=False),
        sa.Column("honeypot_trials", sa.BigInteger, nullable=False),
        sa.Column("drift_cursor", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenant_state")
