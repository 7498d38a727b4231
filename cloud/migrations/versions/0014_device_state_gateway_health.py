"""Each device's state and each gateway's health, as the gateways report them

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 17:00:00

devices: when last heard, battery, signal, availability, open technical faults, when its
next check-in is due, a door contact's state, and when the gateway said so
(devices/wire.py DeviceState). gateways: the health its last heartbeat carried, and its
clock's offset from the dispatch service's at that heartbeat. discovered_devices: what
each gateway hears but has not paired, as it last said. organisations.show_tests: whether
test alarms show, marked, in the operators' queue.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.add_column(
            sa.Column("show_tests", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", _UTC))
        batch_op.add_column(sa.Column("battery_pct", sa.Float()))
        batch_op.add_column(sa.Column("linkquality", sa.Float()))
        batch_op.add_column(sa.Column("rssi_dbm", sa.Float()))
        batch_op.add_column(sa.Column("online", sa.Boolean()))
        batch_op.add_column(sa.Column("faults", sa.JSON()))
        batch_op.add_column(sa.Column("checkin_due_at", _UTC))
        batch_op.add_column(sa.Column("contact", sa.String(8)))
        batch_op.add_column(sa.Column("contact_at", _UTC))
        batch_op.add_column(sa.Column("state_at", _UTC))
    with op.batch_alter_table("gateways") as batch_op:
        batch_op.add_column(sa.Column("health", sa.JSON()))
        batch_op.add_column(sa.Column("health_at", _UTC))
        batch_op.add_column(sa.Column("clock_offset_s", sa.Float()))
    # A gateway's history, newest first (GET /api/v1/gateways/{id}/events).
    op.create_index("events_by_gateway_time", "events", ["org_id", "gateway_id", "received_at"])
    op.create_table(
        "discovered_devices",
        sa.Column("gateway_id", sa.String(64), sa.ForeignKey("gateways.id"), primary_key=True),
        sa.Column("transport", sa.String(32), primary_key=True),
        sa.Column("address", sa.String(256), primary_key=True),
        sa.Column("org_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("first_seen", _UTC, nullable=False),
        sa.Column("last_seen", _UTC, nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("said", sa.String(200), nullable=False, server_default=""),
        sa.Column("reported_at", _UTC, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("discovered_devices")
    op.drop_index("events_by_gateway_time", "events")
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.drop_column("show_tests")
    with op.batch_alter_table("gateways") as batch_op:
        for column in ("clock_offset_s", "health_at", "health"):
            batch_op.drop_column(column)
    with op.batch_alter_table("devices") as batch_op:
        for column in (
            "state_at",
            "contact_at",
            "contact",
            "checkin_due_at",
            "faults",
            "online",
            "rssi_dbm",
            "linkquality",
            "battery_pct",
            "last_seen_at",
        ):
            batch_op.drop_column(column)
