"""alarm lifecycle: claim, assign, on site, resolve with outcome; transitions; position;
gateway supervision: heartbeat interval and offline since

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _new_columns() -> list[sa.Column[object]]:
    """Made afresh each time: a Column belongs to one table, and tests migrate many."""
    return [
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_to", sa.String(length=100), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("on_site_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("resolution_note", sa.String(length=2000), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        for column in _new_columns():
            batch_op.add_column(column)
    # Alarms acknowledged before claiming existed were claimed by whoever acknowledged them.
    op.execute(
        "UPDATE alarms SET claimed_by = acknowledged_by, claimed_at = acknowledged_at, "
        "last_event_at = updated_at WHERE claimed_by IS NULL"
    )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("heartbeat_interval_s", sa.Integer(), server_default="60", nullable=False)
        )
        batch_op.add_column(sa.Column("offline_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "alarm_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=False),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alarm_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alarm_transitions_alarm_id"), ["alarm_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("alarm_transitions")
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("offline_since")
        batch_op.drop_column("heartbeat_interval_s")
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        for column in reversed(_new_columns()):
            batch_op.drop_column(column.name)
