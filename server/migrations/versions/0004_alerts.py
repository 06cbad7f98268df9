"""Alerts (server/alert_store.py): the raised alerts, each once by its cause's key, with their
acknowledgement, and the per-device check state of the check rules. Their delivery rows live in
forward_outbox (0002) beside the forwarders'.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("cause_at", sa.BigInteger, nullable=False),
        sa.Column("raised_at", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
        sa.Column("acked_at", sa.BigInteger, nullable=True),
        sa.Column("acked_by", sa.String(128), nullable=True),
    )
    op.create_index("ix_alerts_rule_device", "alerts", ["rule", "device_id"])
    op.create_index("ix_alerts_raised", "alerts", ["raised_at"])
    op.create_table(
        "alert_checks",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("check_id", sa.String(64), primary_key=True),
        sa.Column("failing_since", sa.BigInteger, nullable=False),
        sa.Column("blocked_since", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_alert_checks_blocked", "alert_checks", ["blocked_since"])


def downgrade() -> None:
    op.drop_index("ix_alert_checks_blocked", table_name="alert_checks")
    op.drop_table("alert_checks")
    op.drop_index("ix_alerts_raised", table_name="alerts")
    op.drop_index("ix_alerts_rule_device", table_name="alerts")
    op.drop_table("alerts")
