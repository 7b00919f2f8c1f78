"""Idempotency keys on events: a retried request whose events are already stored is answered from
the store instead of storing them twice (unique per tenant; NULL keys are never duplicates).

Revision ID: 0004_idempotency
Revises: 0003_dashboard_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_idempotency"
down_revision = "0003_dashboard_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("idempotency_key", sa.String(255), nullable=True))
    op.create_index("ux_events_tenant_key", "events", ["tenant_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_events_tenant_key", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("idempotency_key")
