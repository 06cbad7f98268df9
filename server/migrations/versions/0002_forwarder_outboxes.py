"""Forwarder outboxes: events captured for delivery (forward_pending) and each forwarder's own queue
(forward_outbox) with attempts, next attempt time and dead letters (server/forward_store.py).

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
        "forward_pending",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("uid", sa.String(36), nullable=False),
    )
    op.create_table(
        "forward_outbox",
        sa.Column("forwarder", sa.String(64), primary_key=True),
        sa.Column("uid", sa.String(36), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("dead", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_error", sa.String(200), nullable=True),
    )
    op.create_index("ix_forward_outbox_due", "forward_outbox", ["forwarder", "dead", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_forward_outbox_due", table_name="forward_outbox")
    op.drop_table("forward_outbox")
    op.drop_table("forward_pending")
