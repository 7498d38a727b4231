"""How long positions are kept, per organisation

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 19:10:00

organisations.position_retention_days (30-720, default 90): positions older than this
are removed from events and alarms by the retention job (cloud/retention.py), which
keeps how far it has gone in positions_removed_to (and the last event there, as
[gateway, id], in positions_removed_after). events_by_org_time lets it walk an
organisation's events by the time they were received.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.add_column(
            sa.Column("position_retention_days", sa.Integer(), nullable=False, server_default="90")
        )
        batch_op.add_column(
            sa.Column("positions_removed_to", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("positions_removed_after", sa.JSON(), nullable=True))
    op.create_index("events_by_org_time", "events", ["org_id", "received_at"])


def downgrade() -> None:
    op.drop_index("events_by_org_time", table_name="events")
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.drop_column("positions_removed_after")
        batch_op.drop_column("positions_removed_to")
        batch_op.drop_column("position_retention_days")
