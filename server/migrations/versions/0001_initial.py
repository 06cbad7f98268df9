"""Initial schema: devices, enrollment secrets, admin tokens, policies, events, gaps.

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


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("os", sa.String(32), nullable=True),
        sa.Column("enrolled_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=True),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("failing", sa.Text, nullable=True),
        sa.Column("heartbeat_s", sa.Float, nullable=True),
        sa.Column("stopped", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("agent_version", sa.String(32), nullable=True),
        sa.Column("policy_id", sa.String(64), nullable=True),
        sa.Column("policy_version", sa.BigInteger, nullable=True),
        sa.Column("max_sequence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "enroll_secrets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("uses_left", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("policy_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("bundle", sa.LargeBinary, nullable=False),
        sa.Column("etag", sa.String(80), nullable=False),
        sa.Column("uploaded_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("group_name", "version", name="uq_policies_group_version"),
    )
    op.create_table(
        "events",
        sa.Column("uid", sa.String(36), primary_key=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("class_uid", sa.Integer, nullable=False),
        sa.Column("type_uid", sa.Integer, nullable=False),
        sa.Column("severity_id", sa.Integer, nullable=False),
        sa.Column("event_code", sa.String(64), nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_events_device_sequence", "events", ["device_id", "sequence"])
    op.create_index("ix_events_time", "events", ["time"])
    op.create_index("ix_events_class_uid", "events", ["class_uid"])
    op.create_table(
        "gaps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("detected_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_gaps_device", "gaps", ["device_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_gaps_device", "gaps"),
        ("ix_events_class_uid", "events"),
        ("ix_events_time", "events"),
        ("ix_events_device_sequence", "events"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("gaps", "events", "policies", "admin_tokens", "enroll_secrets", "devices"):
        op.drop_table(table)
