"""A home's away mode, as the dispatch service knows it

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 19:00:00

homes.away, away_by, away_at: the resident is away (set from the staff or operator
console and delivered to the home's gateways as configuration, or by the home's away
button and reported by its gateway as an away_mode event); who set it last, and when.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("homes") as batch_op:
        batch_op.add_column(
            sa.Column("away", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("away_by", sa.String(100), nullable=True))
        batch_op.add_column(sa.Column("away_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("homes") as batch_op:
        batch_op.drop_column("away_at")
        batch_op.drop_column("away_by")
        batch_op.drop_column("away")
