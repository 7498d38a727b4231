"""the alarm list's order as an index: organisation, priority, age

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 20:56:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.create_index(
            "alarms_by_priority_then_age",
            ["org_id", "priority_rank", "received_at", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_index("alarms_by_priority_then_age")
