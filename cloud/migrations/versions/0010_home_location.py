"""a home's location, for the operator's map

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00

A fixed alarm (a button, smoke) is shown on the map at its home; both may be unknown.
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


def downgrade() -> None:
    with op.batch_alter_table("homes") as batch_op:
        batch_op.drop_column("longitude")
        batch_op.drop_column("latitude")
