"""Device state derived from events for the console (issue 14): each device's current posture checks
(device_checks), policy acknowledgements (acknowledgements), daily figures for the overview's charts
(console_daily), and on devices whether the agent is running, when it last stopped without a stop notice and
the last UTC day it was heard from. Maintained by ingest in the same transaction (server/console/state.py).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("running", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("unexpected_stop_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("active_day", sa.Integer, nullable=True))
    op.create_table(
        "device_checks",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("check_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("enforcement", sa.String(16), nullable=False),
        sa.Column("failing_since", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "acknowledgements",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("policy_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("acked_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_acknowledgements_version", "acknowledgements", ["group_name", "policy_id", "version"])
    op.create_table(
        "console_daily",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("metric", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_daily")
    op.drop_index("ix_acknowledgements_version", table_name="acknowledgements")
    op.drop_table("acknowledgements")
    op.drop_table("device_checks")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("active_day")
        batch.drop_column("unexpected_stop_at")
        batch.drop_column("running")
