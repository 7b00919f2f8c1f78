"""Initial runtime schema: tenants, keys, events, alerts, audit queue, monitor health, drift state.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("session", sa.String(200), nullable=True),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("content", sa.Text, nullable=True),
        sa.Column("tool", sa.String(200), nullable=True),
        sa.Column("arguments", sa.JSON, nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("verdicts", sa.JSON, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_index("ix_events_tenant_id", "events", ["tenant_id", "id"])
    op.create_index("ix_events_tenant_agent", "events", ["tenant_id", "agent", "id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("event_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("monitor", sa.String(100), nullable=False),
        sa.Column("agent", sa.String(200), nullable=True),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_alerts_tenant_id", "alerts", ["tenant_id", "id"])
    op.create_table(
        "audit_queue",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_audit_tenant_status", "audit_queue", ["tenant_id", "status", "id"])
    op.create_table(
        "monitor_health",
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("monitor", sa.String(100), primary_key=True),
        sa.Column("trusted", sa.Boolean, nullable=False),
        sa.Column("demoted", sa.Boolean, nullable=False),
        sa.Column("honeypots_sent", sa.Integer, nullable=False),
        sa.Column("honeypots_caught", sa.Integer, nullable=False),
        sa.Column("cusum", sa.Float, nullable=False),
        sa.Column("demoted_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "drift_state",
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("agent", sa.String(200), primary_key=True),
        sa.Column("feature", sa.String(50), primary_key=True),
        sa.Column("detector", sa.String(20), primary_key=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("last_event_id", sa.Integer, nullable=False),
        sa.Column("n_seen", sa.Integer, nullable=False),
        sa.Column("alarms", sa.Integer, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for name in ("drift_state", "monitor_health", "audit_queue", "alerts", "events", "api_keys"):
        op.drop_table(name)
    op.drop_table("tenants")
