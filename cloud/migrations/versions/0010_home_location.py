"""a home's location, for the operator's map, and the team that serves it; devices in
test

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00

A fixed alarm (a button, smoke) is shown on the map at its home; both may be unknown. A
home is served by one home-care team (a district): its alarms carry that team, from when
they are raised, so operators can filter the queue by team. A technician may put a device
in test for a while (installing, checking a button): its alarms then are test alarms,
shown as such, never escalated and never sounded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("homes") as batch_op:
        batch_op.add_column(sa.Column("latitude", sa.Float()))
        batch_op.add_column(sa.Column("longitude", sa.Float()))
        batch_op.add_column(sa.Column("team_id", sa.Integer()))
        batch_op.create_foreign_key("homes_team_id_fkey", "teams", ["team_id"], ["id"])
    with op.batch_alter_table("alarms") as batch_op:
        batch_op.add_column(sa.Column("team_id", sa.Integer()))
        batch_op.add_column(
            sa.Column("test", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("test_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("test_until")
    with op.batch_alter_table("alarms") as batch_op:
        batch_op.drop_column("test")
        batch_op.drop_column("team_id")
    with op.batch_alter_table("homes") as batch_op:
        batch_op.drop_constraint("homes_team_id_fkey", type_="foreignkey")
        batch_op.drop_column("team_id")
        batch_op.drop_column("longitude")
        batch_op.drop_column("latitude")
